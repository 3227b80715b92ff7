package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/internal/testproc"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// startEmbedded starts a server that runs its own agent (node e2e-0) with
// the given built-in plugins, and waits for its node to be Ready.
func startEmbedded(t *testing.T, plugins []string, extra ...string) *cluster {
	t.Helper()
	nodeagent.Require(t)
	c := &cluster{node: "e2e-0", bridge: testnet.BridgeName(), embedded: true, cgroupRoot: "/keelson-e2e-server-" + randomSuffix()}
	var err error
	if c.podCIDR, err = testnet.PodCIDR(); err != nil {
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
	c.server = harness.StartServer(t, harness.ServerOptions{Plugins: plugins, Args: append([]string{
		"--disable-agent=false",
		"--schedulable-control-plane", // its own agent is the only node
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--cni-bridge", c.bridge,
		"--cni-masquerade=false",
		// The host's own network namespace: no service proxy, DNS or
		// routes here (e2e/cluster runs them in namespaces of its own).
		"--disable-service-network",
		"--cgroup-root", c.cgroupRoot,
		"--insecure-registry", c.registry.Host,
	}, extra...)})
	c.dataDir = c.server.DataDir
	c.client = c.server.Clientset(t)
	t.Cleanup(func() { c.cleanup(t) })
	c.waitForNode(t)
	return c
}

// TestServerRunsItsOwnAgent: without --disable-agent a server registers
// itself as a node and runs pods, the way a one-machine cluster runs.
func TestServerRunsItsOwnAgent(t *testing.T) {
	c := startEmbedded(t, nil)
	ns := c.namespace(t, "embedded")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  nodeName: e2e-0
  restartPolicy: Never
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['echo', 'hello from the server node']
`)
	c.waitPod(t, ns, "hello", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	if r := c.server.Kubectl(t, "logs", "-n", ns, "hello"); r.Stdout != "hello from the server node\n" {
		t.Errorf("logs: %s", r)
	}
}

var pluginGVR = schema.GroupVersionResource{Group: "keelson.io", Version: "v1alpha1", Resource: "plugins"}

// pluginRun is what identifies one run of a plugin process.
type pluginRun struct {
	state     string
	restarts  int64
	pid       int64
	lastError string
}

func readPlugins(dyn dynamic.Interface, names []string) (map[string]pluginRun, error) {
	runs := map[string]pluginRun{}
	for _, name := range names {
		obj, err := dyn.Resource(pluginGVR).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("plugin %s: %w", name, err)
		}
		str := func(f string) string { v, _, _ := unstructured.NestedString(obj.Object, "status", f); return v }
		num := func(f string) int64 { v, _, _ := unstructured.NestedInt64(obj.Object, "status", f); return v }
		runs[name] = pluginRun{state: str("state"), restarts: num("restarts"), pid: num("pid"), lastError: str("lastError")}
	}
	return runs, nil
}

// TestServerPodChurnKeepsItsPlugins: creating and deleting pods on a
// server's own agent (network namespaces entered and made on threads Go then
// retires) restarts none of the plugins the server runs (issue 15, item 13:
// their parent-death signal fired with whatever thread had forked them).
func TestServerPodChurnKeepsItsPlugins(t *testing.T) {
	plugins := []string{"replicaset", "deployment", "endpoints", "garbagecollector"}
	c := startEmbedded(t, plugins)
	dyn, err := dynamic.NewForConfig(c.server.RESTConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	var before map[string]pluginRun
	harness.Eventually(t, 2*time.Minute, "every plugin runs", func() (bool, string) {
		if before, err = readPlugins(dyn, plugins); err != nil {
			return false, err.Error()
		}
		for _, r := range before {
			if r.state != "running" || r.pid == 0 {
				return false, fmt.Sprint(before)
			}
		}
		return true, ""
	})
	ns := c.namespace(t, "churn")
	for round := range 3 {
		for i := range 4 {
			c.apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: churn-%d-%d
spec:
  nodeName: e2e-0
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: %s
    command: ['sleep', '3600']
`, round, i, c.busybox))
		}
		for i := range 4 {
			c.waitPod(t, ns, fmt.Sprintf("churn-%d-%d", round, i), 3*time.Minute, "running",
				func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
		}
		zero := int64(0)
		for i := range 4 {
			name := fmt.Sprintf("churn-%d-%d", round, i)
			if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
				t.Fatal(err)
			}
		}
		harness.Eventually(t, 3*time.Minute, "the round's pods are gone", func() (bool, string) {
			for i := range 4 {
				_, err := c.client.CoreV1().Pods(ns).Get(context.Background(), fmt.Sprintf("churn-%d-%d", round, i), metav1.GetOptions{})
				if !apierrors.IsNotFound(err) {
					return false, fmt.Sprintf("churn-%d-%d: %v", round, i, err)
				}
			}
			return true, ""
		})
		// The agent has torn their sandboxes down (netns work included).
		harness.Eventually(t, 3*time.Minute, "the agent removed the round's pods", func() (bool, string) {
			entries, err := os.ReadDir(filepath.Join(c.dataDir, "agent", "pods"))
			return err == nil && len(entries) == 0, fmt.Sprint(len(entries), err)
		})
	}
	after, err := readPlugins(dyn, plugins)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range after {
		if r.restarts != 0 || r.pid != before[name].pid || r.state != "running" {
			t.Errorf("plugin %s: %d restarts, pid %d (was %d), state %s, last error %q",
				name, r.restarts, r.pid, before[name].pid, r.state, r.lastError)
		}
	}
}
