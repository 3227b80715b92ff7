package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/internal/testproc"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// cluster is one server (no agent of its own) and one `keelson agent`
// joined to it, on loopback, with a bridge, pod CIDR and cgroup root of its
// own and a registry serving the busybox image.
type cluster struct {
	server  *harness.Server
	client  kubernetes.Interface
	node    string
	dataDir string
	bridge  string
	podCIDR string
	// cgroupRoot is the parent of the pods' cgroups, removed at the end.
	cgroupRoot string
	registry   *testimage.Registry
	// busybox is the image reference pods use from the registry;
	// "busybox" (docker.io) is served too, through a mirror.
	busybox string

	agent    *testproc.Process
	agentLog string
	// embedded: the server runs the agent itself.
	embedded bool

	// lease is the node's Lease as NodeRegistration saw it at leaseSeen
	// (nil: none), for NoLeaseHeartbeat.
	lease     *coordinationv1.Lease
	leaseSeen time.Time
}

func randomSuffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startCluster starts the server, the registry and the agent, sets the
// node's pod CIDR (as the nodeipam plugin will) and waits for the node to
// be Ready. Everything it made is removed when the test ends.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	nodeagent.Require(t)
	s := harness.StartServer(t, harness.ServerOptions{})
	c := &cluster{server: s, client: s.Clientset(t), node: "agent-" + randomSuffix(), bridge: testnet.BridgeName()}
	c.cgroupRoot = "/keelson-e2e-" + c.node
	var err error
	if c.podCIDR, err = testnet.PodCIDR(); err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are short: a data dir of its own under /tmp.
	if c.dataDir, err = os.MkdirTemp("", "ka"); err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if c.registry, err = testimage.ServeRegistry(); err != nil {
		t.Fatal(err)
	}
	if c.busybox, err = c.registry.Push("busybox:test", img); err != nil {
		t.Fatal(err)
	}
	// The seed's pods say "busybox": docker.io's, reached through a mirror.
	if _, err = c.registry.Push("library/busybox:latest", img); err != nil {
		t.Fatal(err)
	}
	// An air-gapped import, too: a tarball in the images directory.
	if err := os.MkdirAll(filepath.Join(c.dataDir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteTarball(filepath.Join(c.dataDir, "images", "busybox.tar"), "keelson.test/busybox:imported", img); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cleanup(t) })
	c.startAgent(t)
	c.waitForNode(t)
	return c
}

func (c *cluster) agentArgs(t testing.TB) []string {
	return []string{"agent",
		"--data-dir", c.dataDir,
		"--node-name", c.node,
		"--server", "https://127.0.0.1:" + strconv.Itoa(c.server.APIPort),
		// The server token, not the agent token: this agent's kubelet
		// serves on 127.0.0.1, which only a server's own agent may claim.
		"--token", c.server.JoinToken(t),
		"--supervisor-port", strconv.Itoa(c.server.SupervisorPort()),
		"--serf-port", strconv.Itoa(harness.FreePort(t)),
		"--kubelet-address", "127.0.0.1",
		"--kubelet-port", strconv.Itoa(harness.FreePort(t)),
		"--cni-bridge", c.bridge,
		"--cni-masquerade=false",
		// The host's own network namespace: no service proxy, DNS or
		// routes here (e2e/cluster runs them in namespaces of its own).
		"--disable-service-network",
		"--cgroup-root", c.cgroupRoot,
		"--registry-mirror", "docker.io=http://" + c.registry.Host,
		"--insecure-registry", c.registry.Host,
		"--node-label", "keelson.io/e2e=true",
		"--sync-frequency", "10s",
		"--log-level", "debug",
	}
}

func (c *cluster) startAgent(t testing.TB) {
	t.Helper()
	c.agentLog = filepath.Join(c.server.DataDir, "agent.log")
	args := c.agentArgs(t)
	// For profiling a run: the agent serves pprof there.
	if addr := os.Getenv("KEELSON_E2E_AGENT_DEBUG_LISTEN"); addr != "" {
		args = append(args, "--debug-listen", addr)
	}
	p, err := testproc.Start(testproc.Spec{Name: "keelson agent", Bin: c.server.Bin, Args: args,
		LogPath: c.agentLog, AppendLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started keelson agent pid %d, log %s", p.PID(), c.agentLog)
	c.agent = p
}

// stopAgent ends the agent with SIGTERM (SIGKILL after a minute).
func (c *cluster) stopAgent() {
	if c.agent == nil {
		return
	}
	_ = c.agent.Stop(time.Minute)
	c.agent = nil
}

// waitForNode waits for the agent's Node, gives it its pod CIDR and waits
// until it is Ready.
func (c *cluster) waitForNode(t testing.TB) {
	t.Helper()
	ctx := context.Background()
	harness.Eventually(t, 3*time.Minute, "the agent registers its node", func() (bool, string) {
		_, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, c.podCIDR, c.podCIDR)
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

// namespace creates a namespace with the default service account and the
// root CA ConfigMap, which controllers not running here would create.
func (c *cluster) namespace(t testing.TB, name string) string {
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

// apply runs kubectl apply -f - in a namespace.
func (c *cluster) apply(t testing.TB, ns, manifest string) {
	t.Helper()
	r := c.server.KubectlIn(t, manifest, "apply", "-n", ns, "-f", "-")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl apply failed:\n%s", r)
	}
}

// waitPod waits until cond holds for the pod and returns it.
func (c *cluster) waitPod(t testing.TB, ns, name string, timeout time.Duration, what string, cond func(*v1.Pod) bool) *v1.Pod {
	t.Helper()
	var last *v1.Pod
	harness.Eventually(t, timeout, fmt.Sprintf("pod %s/%s: %s", ns, name, what), func() (bool, string) {
		p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		last = p
		return cond(p), describe(p)
	})
	return last
}

func describe(p *v1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s ip=%s", p.Status.Phase, p.Status.PodIP)
	for _, s := range append(append([]v1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, " [%s restarts=%d ready=%v", s.Name, s.RestartCount, s.Ready)
		switch {
		case s.State.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s: %s", s.State.Waiting.Reason, s.State.Waiting.Message)
		case s.State.Running != nil:
			b.WriteString(" running")
		case s.State.Terminated != nil:
			fmt.Fprintf(&b, " terminated %s (%d)", s.State.Terminated.Reason, s.State.Terminated.ExitCode)
		}
		b.WriteString("]")
	}
	return b.String()
}

// cleanup deletes every pod, lets the agent remove their containers and
// network, stops the agent and removes what is left: the bridge, the cgroup
// root, mounts and the data dir.
func (c *cluster) cleanup(t testing.TB) {
	ctx := context.Background()
	if c.agent != nil || c.embedded {
		if list, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil {
			zero := int64(0)
			for _, p := range list.Items {
				_ = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
		}
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			entries, _ := os.ReadDir(filepath.Join(c.dataDir, "agent", "pods"))
			if len(entries) == 0 {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if t.Failed() && !c.embedded {
			t.Logf("---- tail of %s ----\n%s", c.agentLog, testproc.Tail(c.agentLog, 150))
		}
		c.stopAgent()
		if c.embedded {
			c.server.Kill()
		}
	}
	nodeagent.KillShims(t, filepath.Join(c.dataDir, "agent", "containerd", "containerd.sock"))
	nodeagent.UnmountUnder(t, c.dataDir)
	if err := testnet.DeleteLink(c.bridge); err != nil {
		t.Error(err)
	}
	testproc.RemoveCgroupTree(c.cgroupRoot)
	if c.registry != nil {
		c.registry.Close()
	}
	if !c.embedded { // the server's data dir is the test's, removed with it
		os.RemoveAll(c.dataDir)
	}
}
