package storage

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// waitTimeout bounds every wait; generous, the machine is shared.
const waitTimeout = 3 * time.Minute

// plugins are the controllers storage needs: the scheduler places pods
// and binds delayed claims, persistentvolume binds and protects, localpath
// provisions, namespace and garbagecollector clean up, serviceaccount
// gives namespaces their default ServiceAccount and root CA, nodelifecycle
// lifts the not-ready taint new nodes get at admission, statefulset makes
// claims from volumeClaimTemplates.
var plugins = []string{"scheduler", "persistentvolume", "localpath", "namespace", "garbagecollector", "serviceaccount", "nodelifecycle", "statefulset"}

// cluster is a server and one agent on loopback.
type cluster struct {
	server *harness.Server
	client kubernetes.Interface
	agent  *nodeagent.Agent
	node   string
	// storage is the agent's --storage-dir when the test set one.
	storage string
}

// startCluster starts the server and the agent; storageDir, when set, is
// the agent's --storage-dir.
func startCluster(t testing.TB, storageDir ...string) *cluster {
	t.Helper()
	nodeagent.Require(t)
	s := harness.StartServer(t, harness.ServerOptions{Plugins: plugins})
	c := &cluster{server: s, client: s.Clientset(t), node: "storage-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)}
	args := []string{
		"--server", "https://127.0.0.1:" + strconv.Itoa(s.APIPort),
		// The server token: this agent's kubelet serves on 127.0.0.1,
		// which only a server's own agent may claim.
		"--token", s.JoinToken(t),
		"--supervisor-port", strconv.Itoa(s.SupervisorPort()),
		"--serf-port", strconv.Itoa(harness.FreePort(t)),
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--cni-masquerade=false",
		"--disable-service-network",
		"--sync-frequency", "10s",
	}
	if len(storageDir) > 0 {
		c.storage = storageDir[0]
		args = append(args, "--storage-dir", c.storage)
	}
	c.agent = nodeagent.New(t, nodeagent.Options{Name: c.node, Args: args})
	c.agent.Start(t)
	t.Cleanup(func() { c.deleteAllPods() })
	c.waitForNode(t)
	return c
}

// deleteAllPods lets the agent stop its pods (and release their mounts)
// before it is killed.
func (c *cluster) deleteAllPods() {
	ctx := context.Background()
	list, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range list.Items {
		_ = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if l, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitForNode gives the node a pod CIDR (no nodeipam runs) and waits for
// it to be Ready.
func (c *cluster) waitForNode(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	harness.Eventually(t, waitTimeout, "the agent registers its node", func() (bool, string) {
		_, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	cidr, err := testnet.PodCIDR()
	if err != nil {
		t.Fatal(err)
	}
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, cidr, cidr)
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("setting the pod CIDR: %v", err)
	}
	harness.Eventually(t, waitTimeout, "the node becomes Ready", func() (bool, string) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady {
				return cond.Status == v1.ConditionTrue, cond.Message
			}
		}
		return false, "no Ready condition"
	})
}

// storageDir is the agent's --storage-dir.
func (c *cluster) storageDir() string {
	if c.storage != "" {
		return c.storage
	}
	return filepath.Join(c.agent.DataDir, "storage")
}

// namespace creates a namespace and waits for its default ServiceAccount.
func (c *cluster) namespace(t testing.TB, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "namespace "+name+" has its default ServiceAccount", func() (bool, string) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return name
}

// claim creates a claim of size in ns; class nil leaves it to the default.
func (c *cluster) claim(t testing.TB, ns, name, size string, class *string) *v1.PersistentVolumeClaim {
	t.Helper()
	pvc := &v1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PersistentVolumeClaimSpec{
			AccessModes:      []v1.PersistentVolumeAccessMode{v1.ReadWriteOnce},
			StorageClassName: class,
			Resources:        v1.VolumeResourceRequirements{Requests: v1.ResourceList{v1.ResourceStorage: resource.MustParse(size)}},
		},
	}
	created, err := c.client.CoreV1().PersistentVolumeClaims(ns).Create(context.Background(), pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating claim %s/%s: %v", ns, name, err)
	}
	return created
}

// shellPod runs script in busybox with the claim mounted at /data.
func (c *cluster) shellPod(t testing.TB, ns, name, claim, script string, mutate ...func(*v1.Pod)) *v1.Pod {
	t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.PodSpec{
			RestartPolicy:                 v1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: "sh", Image: nodeagent.BusyboxImage, ImagePullPolicy: v1.PullNever,
				Command: []string{"sh", "-c", script}, VolumeMounts: []v1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes: []v1.Volume{{Name: "data", VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	created, err := c.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	return created
}

// waitPod waits for the pod to reach phase and returns it.
func (c *cluster) waitPod(t *testing.T, ns, name string, phase v1.PodPhase) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	harness.Eventually(t, waitTimeout, fmt.Sprintf("pod %s/%s is %s", ns, name, phase), func() (bool, string) {
		p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = p
		return p.Status.Phase == phase, c.describe(p)
	})
	return last
}

// describe is the pod's state and its latest events, for a failed wait.
func (c *cluster) describe(p *v1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s node=%q", p.Status.Phase, p.Spec.NodeName)
	for _, s := range p.Status.ContainerStatuses {
		if s.State.Waiting != nil {
			fmt.Fprintf(&b, " waiting %s: %s", s.State.Waiting.Reason, s.State.Waiting.Message)
		}
	}
	fmt.Fprintf(&b, " events: %s", c.events(p.Namespace, "Pod", p.Name))
	if p.Spec.NodeName == "" {
		if n, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{}); err == nil {
			fmt.Fprintf(&b, "; node taints %v", n.Spec.Taints)
			for _, cond := range n.Status.Conditions {
				fmt.Fprintf(&b, " %s=%s", cond.Type, cond.Status)
			}
		}
	}
	return b.String()
}

// events lists the reasons and messages of an object's events.
func (c *cluster) events(ns, kind, name string) string {
	list, err := c.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return strings.Join(out, " | ")
}

// logs returns the output of the pod's container.
func (c *cluster) logs(t *testing.T, ns, name string) string {
	t.Helper()
	b, err := c.client.CoreV1().Pods(ns).GetLogs(name, &v1.PodLogOptions{}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs of %s/%s: %v", ns, name, err)
	}
	return string(b)
}

// deletePod deletes a pod and waits until it is gone.
func (c *cluster) deletePod(t *testing.T, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := c.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting pod %s/%s: %v", ns, name, err)
	}
	harness.Eventually(t, waitTimeout, "pod "+ns+"/"+name+" is gone", func() (bool, string) {
		_, err := c.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// waitClaimBound waits for the claim to be Bound and returns it.
func (c *cluster) waitClaimBound(t *testing.T, ns, name string) *v1.PersistentVolumeClaim {
	t.Helper()
	var last *v1.PersistentVolumeClaim
	harness.Eventually(t, waitTimeout, "claim "+ns+"/"+name+" is Bound", func() (bool, string) {
		pvc, err := c.client.CoreV1().PersistentVolumeClaims(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = pvc
		return pvc.Status.Phase == v1.ClaimBound, fmt.Sprintf("phase %s; events: %s", pvc.Status.Phase, c.events(ns, "PersistentVolumeClaim", name))
	})
	return last
}

// waitGone waits until get reports NotFound.
func waitGone(t testing.TB, what string, get func() error) {
	t.Helper()
	harness.Eventually(t, waitTimeout, what+" is gone", func() (bool, string) {
		err := get()
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}

// kubeletGet calls the agent's kubelet API with the admin's certificate.
// (The API server's node proxy refuses the loopback address test nodes
// have, so the API is called directly.)
func (c *cluster) kubeletGet(t *testing.T, path string) ([]byte, error) {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	pki := filepath.Join(c.server.DataDir, "pki")
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		return nil, err
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", n.Status.DaemonEndpoints.KubeletEndpoint.Port, path))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b, err
}
