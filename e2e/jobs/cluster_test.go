package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/internal/testproc"
)

// cluster is one server that runs its own agent and the plugins under test.
type cluster struct {
	server     *harness.Server
	client     kubernetes.Interface
	node       string
	bridge     string
	cgroupRoot string
	registry   *testimage.Registry
	busybox    string
}

func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startCluster starts the server with its agent and the job, cronjob,
// ttlafterfinished, scheduler, garbage collector and node lifecycle (it lifts
// the node's not-ready taint) plugins, and waits for
// its node to be Ready. Everything it made is removed when the test ends.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	nodeagent.Require(t)
	c := &cluster{node: "jobs-" + randomSuffix(), bridge: testnet.BridgeName()}
	c.cgroupRoot = "/keelson-e2e-" + c.node
	podCIDR, err := testnet.PodCIDR()
	if err != nil {
		t.Fatal(err)
	}
	if c.registry, err = testimage.ServeRegistry(); err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if c.busybox, err = c.registry.Push("busybox:test", img); err != nil {
		t.Fatal(err)
	}
	// A server that fails to start may have made the bridge and cgroups
	// already; the full cleanup below is registered only once it runs.
	t.Cleanup(func() {
		_ = testnet.DeleteLink(c.bridge)
		testproc.RemoveCgroupTree(c.cgroupRoot)
	})
	c.server = harness.StartServer(t, harness.ServerOptions{
		NodeName: c.node,
		Plugins:  []string{"job", "cronjob", "ttlafterfinished", "scheduler", "garbagecollector", "nodelifecycle"},
		Args: []string{
			"--disable-agent=false",
			// The server is the only node: it runs the Jobs' pods.
			"--schedulable-control-plane",
			"--kubelet-address", "127.0.0.1",
			"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
			"--cni-bridge", c.bridge,
			"--cni-masquerade=false",
			"--disable-service-network",
			"--cgroup-root", c.cgroupRoot,
			"--insecure-registry", c.registry.Host,
		},
	})
	c.client = c.server.Clientset(t)
	t.Cleanup(func() { c.cleanup(t) })
	c.waitForNode(t, podCIDR)
	return c
}

func (c *cluster) waitForNode(t *testing.T, podCIDR string) {
	t.Helper()
	ctx := context.Background()
	harness.Eventually(t, 3*time.Minute, "the server's agent registers its node", func() (bool, string) {
		_, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, podCIDR, podCIDR)
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.node, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("setting the pod CIDR: %v", err)
	}
	harness.Eventually(t, 2*time.Minute, "the node becomes Ready", func() (bool, string) {
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

// namespace creates a namespace with its default ServiceAccount and root
// CA ConfigMap (their controllers do not run here).
func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	ns := name + "-" + randomSuffix()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(c.server.DataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": string(ca)}}
	if _, err := c.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

func (c *cluster) apply(t *testing.T, ns, manifest string) {
	t.Helper()
	if r := c.server.KubectlIn(t, manifest, "apply", "-n", ns, "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("kubectl apply failed:\n%s", r)
	}
}

// waitJob waits until cond holds for the Job and returns it.
func (c *cluster) waitJob(t *testing.T, ns, name string, timeout time.Duration, what string, cond func(*batchv1.Job) bool) *batchv1.Job {
	t.Helper()
	var last *batchv1.Job
	harness.Eventually(t, timeout, fmt.Sprintf("job %s/%s: %s", ns, name, what), func() (bool, string) {
		j, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = j
		return cond(j), fmt.Sprintf("status %+v", j.Status)
	})
	return last
}

func condition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if c := &j.Status.Conditions[i]; c.Type == t && c.Status == v1.ConditionTrue {
			return c
		}
	}
	return nil
}

func (c *cluster) jobPods(t *testing.T, ns, job string) []v1.Pod {
	t.Helper()
	list, err := c.client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// events returns the reasons of the Events about the object name.
func (c *cluster) events(t *testing.T, ns, name string) map[string]int {
	t.Helper()
	list, err := c.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range list.Items {
		out[e.Reason] += int(max(e.Count, 1))
	}
	return out
}

// cleanup deletes every pod, lets the agent remove their containers, stops
// the server and removes the bridge, cgroups and mounts.
func (c *cluster) cleanup(t *testing.T) {
	ctx := context.Background()
	dataDir := c.server.DataDir
	if list, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
		zero := int64(0)
		for _, p := range list.Items {
			if len(p.Finalizers) > 0 {
				_, _ = c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			}
			_ = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(filepath.Join(dataDir, "agent", "pods"))
		if len(entries) == 0 {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	c.server.Kill()
	nodeagent.KillShims(t, filepath.Join(dataDir, "agent", "containerd", "containerd.sock"))
	nodeagent.UnmountUnder(t, dataDir)
	if err := testnet.DeleteLink(c.bridge); err != nil {
		t.Error(err)
	}
	testproc.RemoveCgroupTree(c.cgroupRoot)
	c.registry.Close()
}
