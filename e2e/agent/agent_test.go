package agent

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/testimage"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAgent runs the node agent scenarios against one cluster: starting
// one costs a server, a containerd and an image import, so the scenarios
// share it, each in its own namespace.
func TestAgent(t *testing.T) {
	c := startCluster(t)
	t.Run("NodeRegistration", c.testNodeRegistration)
	t.Run("MyAppPodLogs", c.testMyAppPod)
	t.Run("HostAliasesPod", c.testHostAliases)
	t.Run("InitContainers", c.testInitContainers)
	t.Run("ReadinessNeverReady", c.testReadinessNeverReady)
	t.Run("Exec", c.testExec)
	t.Run("Attach", c.testAttach)
	t.Run("ImagesImport", c.testImagesImport)
	t.Run("PortForward", c.testPortForward)
	t.Run("LogsOptions", c.testLogsOptions)
	t.Run("VolumesAndEnv", c.testVolumesAndEnv)
	t.Run("ClusterTrustBundleVolume", c.testClusterTrustBundleVolume)
	t.Run("PodCertificateVolume", c.testPodCertificateVolume)
	t.Run("ImagePullBackOff", c.testImagePullBackOff)
	t.Run("ImageVolume", c.testImageVolume)
	t.Run("SecurityContext", c.testSecurityContext)
	t.Run("DeleteRunsPreStopAndRespectsGrace", c.testDeleteRunsPreStopAndRespectsGrace)
	t.Run("KubeletEndpoints", c.testKubeletEndpoints)
	t.Run("OOMKilled", c.testOOMKilled)
	t.Run("NoLeaseHeartbeat", c.testNoLeaseHeartbeat) // before the agent restarts
	t.Run("GossipAPIAddressMustBeProven", c.testGossipAPIAddressMustBeProven)
	t.Run("AgentRestart", c.testAgentRestart)
	t.Run("LivenessBackOff", c.testLivenessBackOff)
}

func (c *cluster) testNodeRegistration(t *testing.T) {
	ctx := context.Background()
	n, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["kubernetes.io/hostname"] != c.node || n.Labels["kubernetes.io/os"] != "linux" || n.Labels["keelson.io/e2e"] != "true" {
		t.Errorf("labels %v", n.Labels)
	}
	info := n.Status.NodeInfo
	if info.KernelVersion == "" || info.OSImage == "" || !strings.HasPrefix(info.ContainerRuntimeVersion, "containerd://1.") || !strings.HasPrefix(info.KubeletVersion, "v1.37") {
		t.Errorf("node info %+v", info)
	}
	if n.Status.Capacity.Cpu().Value() < 1 || n.Status.Capacity.Memory().Value() < 1<<20 || n.Status.Capacity.Pods().Value() != 110 {
		t.Errorf("capacity %v", n.Status.Capacity)
	}
	if n.Status.Allocatable.Memory().Cmp(*n.Status.Capacity.Memory()) >= 0 {
		t.Errorf("allocatable memory %v not below capacity %v (eviction threshold)", n.Status.Allocatable.Memory(), n.Status.Capacity.Memory())
	}
	want := map[v1.NodeConditionType]string{
		v1.NodeMemoryPressure: "KubeletHasSufficientMemory", v1.NodeDiskPressure: "KubeletHasNoDiskPressure",
		v1.NodePIDPressure: "KubeletHasSufficientPID", v1.NodeReady: "KubeletReady",
	}
	for _, cond := range n.Status.Conditions {
		if r, ok := want[cond.Type]; ok && cond.Reason != r {
			t.Errorf("condition %s: reason %s, want %s", cond.Type, cond.Reason, r)
		}
		delete(want, cond.Type)
	}
	if len(want) > 0 {
		t.Errorf("missing conditions %v", want)
	}
	if ip := net.ParseIP(n.Status.Addresses[0].Address); n.Status.Addresses[0].Type != v1.NodeInternalIP || ip == nil {
		t.Errorf("addresses %v", n.Status.Addresses)
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port == 0 {
		t.Error("no kubelet endpoint")
	}
	// The agent is a member of the servers' gossip pool: the raft leader
	// takes the node's liveness from it and marks the Node so.
	harness.Eventually(t, time.Minute, "the leader marks the node's liveness as gossip", func() (bool, string) {
		n, err := c.client.CoreV1().Nodes().Get(ctx, c.node, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return nodehealth.IsGossip(n), fmt.Sprint(n.Annotations)
	})
	c.lease = c.nodeLease(t)
	c.leaseSeen = time.Now()
}

// testNoLeaseHeartbeat: a gossip node's heartbeat costs no API write, so
// its agent leaves the Lease (written at most once, before the agent saw
// its Node marked) as it was when NodeRegistration looked, however long
// the scenarios in between ran.
func (c *cluster) testNoLeaseHeartbeat(t *testing.T) {
	// A Lease node renews every quarter of the Lease's 40 s: wait two
	// renewal periods at least (the scenarios in between usually took
	// longer) before concluding that none came.
	if wait := time.Until(c.leaseSeen.Add(25 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	before, now := c.lease, c.nodeLease(t)
	switch {
	case before == nil && now != nil:
		t.Errorf("the agent of a gossip node created its Lease (renewed %v)", now.Spec.RenewTime)
	case before != nil && now == nil:
		t.Errorf("the node's Lease was deleted")
	case before != nil && now.ResourceVersion != before.ResourceVersion:
		t.Errorf("the agent of a gossip node renewed its Lease: renew time %v, then %v", before.Spec.RenewTime, now.Spec.RenewTime)
	}
}

// nodeLease returns the node's Lease, nil if there is none.
func (c *cluster) nodeLease(t *testing.T) *coordinationv1.Lease {
	t.Helper()
	l, err := c.client.CoordinationV1().Leases(v1.NamespaceNodeLease).Get(context.Background(), c.node, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading the node's Lease: %v", err)
	}
	return l
}

// testMyAppPod runs the seed's myapp-pod and reads its log through kubectl.
func (c *cluster) testMyAppPod(t *testing.T) {
	ns := c.namespace(t, "myapp")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: myapp-pod
  labels:
    app: myapp
spec:
  nodeName: `+c.node+`
  containers:
  - name: myapp-container
    image: busybox
    command: ['sh', '-c', 'echo Hello Kubernetes! && sleep 3600']
`)
	p := c.waitPod(t, ns, "myapp-pod", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	_, cidr, _ := net.ParseCIDR(c.podCIDR)
	if !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
		t.Errorf("pod IP %q not in the node's pod CIDR %s", p.Status.PodIP, c.podCIDR)
	}
	harness.Eventually(t, time.Minute, "kubectl logs shows the greeting", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "myapp-pod")
		return r.ExitCode == 0 && r.Stdout == "Hello Kubernetes!\n", r.String()
	})
}

// seedHosts is the seed's /etc/hosts of hostaliases-pod, with its IP, as
// kubelet writes it: one line per alias, its hostnames tab-separated (the
// seed's notes show one hostname per line; the conformance spec and
// kubelet's code say otherwise).
const seedHosts = `# Kubernetes-managed hosts file.
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
%s	hostaliases-pod
# Entries added by HostAliases.
127.0.0.1	foo.local	bar.local
10.1.2.3	foo.remote	bar.remote
`

func (c *cluster) testHostAliases(t *testing.T) {
	ns := c.namespace(t, "hostaliases")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: hostaliases-pod
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  hostAliases:
  - ip: "127.0.0.1"
    hostnames:
    - "foo.local"
    - "bar.local"
  - ip: "10.1.2.3"
    hostnames:
    - "foo.remote"
    - "bar.remote"
  containers:
  - name: cat-hosts
    image: busybox
    command:
    - cat
    args:
    - "/etc/hosts"
`)
	p := c.waitPod(t, ns, "hostaliases-pod", 3*time.Minute, "completed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	if s := p.Status.ContainerStatuses[0]; s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" {
		t.Errorf("container state %+v, want terminated Completed", s.State)
	}
	r := c.server.Kubectl(t, "logs", "-n", ns, "hostaliases-pod")
	if want := fmt.Sprintf(seedHosts, p.Status.PodIP); r.Stdout != want {
		t.Errorf("kubectl logs hostaliases-pod:\n%s\nwant:\n%s", r, want)
	}
	out := c.server.MustKubectl(t, "get", "pod", "-n", ns, "hostaliases-pod", "--no-headers")
	if f := strings.Fields(out); len(f) < 3 || f[1] != "0/1" || f[2] != "Completed" {
		t.Errorf("kubectl get pod: %q, want READY 0/1 STATUS Completed", out)
	}
}

// testImagesImport: `keelson images import` loads a tarball into the
// agent's containerd; a pod that must not pull then runs it.
func (c *cluster) testImagesImport(t *testing.T) {
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(t.TempDir(), "cli.tar")
	if err := testimage.WriteTarball(tarball, "keelson.test/cli:1", img); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(c.server.Bin, "images", "import", "--data-dir", c.dataDir, tarball).CombinedOutput()
	if err != nil || string(out) != "imported keelson.test/cli:1\n" {
		t.Fatalf("keelson images import: %v\n%s", err, out)
	}
	ns := c.namespace(t, "imported")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: offline
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  containers:
  - name: app
    image: keelson.test/cli:1
    imagePullPolicy: Never
    command: ['echo', 'imported']
`)
	c.waitPod(t, ns, "offline", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
}
