package agent

import (
	"strconv"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	v1 "k8s.io/api/core/v1"
)

// TestServerRunsItsOwnAgent: without --disable-agent a server registers
// itself as a node and runs pods, the way a one-machine cluster runs.
func TestServerRunsItsOwnAgent(t *testing.T) {
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
	c.server = harness.StartServer(t, harness.ServerOptions{Args: []string{
		"--disable-agent=false",
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--cni-bridge", c.bridge,
		"--cni-masquerade=false",
		// The host's own network namespace: no service proxy, DNS or
		// routes here (e2e/cluster runs them in namespaces of its own).
		"--disable-service-network",
		"--cgroup-root", c.cgroupRoot,
		"--insecure-registry", c.registry.Host,
	}})
	c.dataDir = c.server.DataDir
	c.client = c.server.Clientset(t)
	t.Cleanup(func() { c.cleanup(t) })
	c.waitForNode(t)

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
