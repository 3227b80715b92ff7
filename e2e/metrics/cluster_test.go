package metrics

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
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
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

// plugins: the scheduler places pods, serviceaccount gives namespaces
// their default ServiceAccount, nodelifecycle lifts the not-ready taint,
// clusterroleaggregation folds the metrics reader role into view, and
// metricsserver serves the metrics API.
var plugins = []string{"scheduler", "serviceaccount", "nodelifecycle", "clusterroleaggregation", "metricsserver", "namespace", "garbagecollector"}

// cluster is a server and one agent on loopback.
type cluster struct {
	server *harness.Server
	client kubernetes.Interface
	agent  *nodeagent.Agent
	node   string
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	nodeagent.Require(t)
	s := harness.StartServer(t, harness.ServerOptions{Plugins: plugins, Args: []string{
		// A free port: other tests' servers may hold the default.
		"--plugin-config", fmt.Sprintf(`metricsserver={"port":%d}`, harness.FreePort(t)),
	}})
	c := &cluster{server: s, client: s.Clientset(t), node: "metrics-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)}
	c.agent = nodeagent.New(t, nodeagent.Options{Name: c.node, Args: []string{
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
	}})
	c.agent.Start(t)
	t.Cleanup(func() { c.deleteAllPods() })
	c.waitForNode(t)
	return c
}

// deleteAllPods lets the agent stop its pods before it is killed.
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

// shellPod runs script in busybox, labelled app=name.
func (c *cluster) shellPod(t testing.TB, ns, name, container, script string) {
	t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: container, Image: nodeagent.BusyboxImage, ImagePullPolicy: v1.PullNever,
				Command: []string{"sh", "-c", script}}},
		},
	}
	if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	harness.Eventually(t, waitTimeout, fmt.Sprintf("pod %s/%s runs", ns, name), func() (bool, string) {
		p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == v1.PodRunning, string(p.Status.Phase)
	})
}

// kubeletGet calls the agent's kubelet API with the given bearer token
// (the admin's certificate when empty) and returns the status and body.
// (The API server's node proxy refuses the loopback address test nodes
// have, so the API is called directly.)
func (c *cluster) kubeletGet(t *testing.T, path, token string) (int, string) {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(c.server.DataDir, "pki")
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if token == "" {
		admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{admin}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", n.Status.DaemonEndpoints.KubeletEndpoint.Port, path), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
