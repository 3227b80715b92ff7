package ops

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// waitTimeout bounds every wait; a hang guard on a busy shared machine,
// not a timing claim.
const waitTimeout = 3 * time.Minute

// TestKillallAfterCrash: an agent running a pod with tmpfs volumes and a
// host port in its own network namespace is killed with SIGKILL, which
// leaves its shims, the pod's processes, mounts, bridge, veth, iptables
// chains and cluster DNS address behind. A second agent on another data dir
// refuses the first one's bridge with the command to run; `keelson
// killall` leaves the namespace as it was before the agent started (its
// devices, iptables and nftables rules, routes) with no mount below the
// data dir and no process of the agent's; `keelson uninstall` removes the
// data dir.
func TestKillallAfterCrash(t *testing.T) {
	nodeagent.Require(t)
	ha.RequireNetns(t)
	for _, bin := range []string{"iptables-save", "nft"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	const node = "n1"
	c := ha.NewCluster(t, ha.Options{Servers: 1, APIServer: true, Hosts: []string{node}, Args: []string{"--cluster-cidr", cidr}})
	server := c.Servers[0]
	client := server.Clientset(t)
	h := c.Net.Host(node)
	before := readHostState(t, h)
	args := []string{
		"--server", "https://" + net.JoinHostPort(server.IP, "6443"),
		"--token-file", c.AgentTokenFile(t),
		"--node-ip", h.IP, "--kubelet-address", h.IP, "--cluster-cidr", cidr,
	}
	a := nodeagent.New(t, nodeagent.Options{Name: node, NetNS: h.NS, Args: args})
	a.Start(t)
	runPod(t, client, node)

	a.Kill()
	left := readHostState(t, h)
	if len(a.Shims()) == 0 || len(mountsUnder(t, a.DataDir)) == 0 || !strings.Contains(left.iptables, "KEELSON-") || !slices.Contains(left.links, a.Bridge) {
		t.Fatalf("the killed agent left nothing to clean up (shims %v, mounts %v, links %v):\n%s", a.Shims(), mountsUnder(t, a.DataDir), left.links, left.iptables)
	}

	t.Run("AnotherAgentRefusesTheLeftovers", func(t *testing.T) {
		other := t.TempDir()
		out, err := keelsonIn(t, h, append([]string{"agent", "--data-dir", other, "--node-name", "n2", "--cni-bridge", a.Bridge}, args...)...)
		want := "keelson agent --cleanup --all --data-dir " + a.DataDir
		if err == nil || !strings.Contains(out, want) {
			t.Fatalf("a second agent on the first one's bridge: err %v, output does not say %q:\n%s", err, want, out)
		}
	})

	out, err := keelsonIn(t, h, "killall", "--data-dir", a.DataDir)
	t.Logf("keelson killall:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, a.DataDir); len(m) > 0 {
		t.Errorf("still mounted below the data dir: %v", m)
	}
	if s, d := a.Shims(), a.Containerd(); len(s)+len(d) > 0 {
		t.Errorf("processes of the agent still run: shims %v, containerd %v", s, d)
	}
	if procs := cgroupProcs(a.CgroupRoot); procs != "" {
		t.Errorf("pod processes still run in %s: %s", a.CgroupRoot, procs)
	}
	after := readHostState(t, h)
	after.compare(t, before)

	out, err = keelsonIn(t, h, "uninstall", "--data-dir", a.DataDir)
	t.Logf("keelson uninstall:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.DataDir); !os.IsNotExist(err) {
		t.Errorf("the data dir %s is still there after uninstall (%v)", a.DataDir, err)
	}
}

// runPod runs a pod with a memory emptyDir, a secret (both tmpfs mounts)
// and a host port (CNI portmap rules), and waits until it runs.
func runPod(t *testing.T, client kubernetes.Interface, node string) {
	t.Helper()
	ctx := context.Background()
	ns := &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "teardown", Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "the namespace's default ServiceAccount", func() (bool, string) {
		_, err := client.CoreV1().ServiceAccounts("teardown").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	secret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"k": "v"}}
	if _, err := client.CoreV1().Secrets("teardown").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	size := resource.MustParse("1Mi")
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1.PodSpec{
			NodeName: node,
			Containers: []v1.Container{{
				Name: "c", Image: nodeagent.BusyboxImage, ImagePullPolicy: v1.PullNever,
				Command:      []string{"sleep", "3600"},
				Ports:        []v1.ContainerPort{{ContainerPort: 8080, HostPort: 18080}},
				VolumeMounts: []v1.VolumeMount{{Name: "mem", MountPath: "/mem"}, {Name: "secret", MountPath: "/secret"}},
			}},
			Volumes: []v1.Volume{
				{Name: "mem", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{Medium: v1.StorageMediumMemory, SizeLimit: &size}}},
				{Name: "secret", VolumeSource: v1.VolumeSource{Secret: &v1.SecretVolumeSource{SecretName: "s"}}},
			},
		},
	}
	if _, err := client.CoreV1().Pods("teardown").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "the pod runs", func() (bool, string) {
		p, err := client.CoreV1().Pods("teardown").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == v1.PodRunning, fmt.Sprintf("%s %v", p.Status.Phase, p.Status.Conditions)
	})
}

// keelsonIn runs the binary in h's network namespace (nsenter --net: the
// host's mounts and cgroups stay visible).
func keelsonIn(t *testing.T, h *ha.Host, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + h.NS, "--", harness.KeelsonBin(t)}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// hostState is what an agent may change in its network namespace.
type hostState struct {
	links    []string // device names
	addrs    string   // ip -o addr
	routes   string   // ip route, every table
	iptables string   // iptables-save, chains and rules only
	nft      string   // nft list ruleset
}

func readHostState(t *testing.T, h *ha.Host) hostState {
	t.Helper()
	run := func(args ...string) string {
		out, err := h.Exec(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var s hostState
	for _, l := range strings.Split(strings.TrimSpace(run("ip", "-o", "link", "show")), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			s.links = append(s.links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	s.addrs = run("ip", "-o", "addr", "show")
	s.routes = run("ip", "route", "show", "table", "all")
	var rules []string
	for _, l := range strings.Split(run("iptables-save"), "\n") {
		// User chains and rules: a built-in chain (":INPUT ACCEPT")
		// appears once its table is loaded, which nothing undoes.
		if strings.Contains(l, "CNI-HOSTPORT-") {
			continue
		}
		if strings.HasPrefix(l, "-A") || (strings.HasPrefix(l, ":") && strings.Contains(l, " - ")) {
			rules = append(rules, strings.SplitN(l, " [", 2)[0]) // without counters
		}
	}
	s.iptables = strings.Join(rules, "\n")
	s.nft = run("nft", "list", "ruleset")
	return s
}

// compare fails the test for every difference from before but CNI's own
// host-port chains, which the portmap plugin shares between all CNI users
// and never deletes (they are left empty: no per-pod CNI-DN- chain).
func (s hostState) compare(t *testing.T, before hostState) {
	t.Helper()
	if !slices.Equal(s.links, before.links) {
		t.Errorf("devices: %v, before the agent %v", s.links, before.links)
	}
	if s.addrs != before.addrs {
		t.Errorf("addresses:\n%s\nbefore the agent:\n%s", s.addrs, before.addrs)
	}
	if s.routes != before.routes {
		t.Errorf("routes:\n%s\nbefore the agent:\n%s", s.routes, before.routes)
	}
	if s.iptables != before.iptables {
		t.Errorf("iptables chains and rules:\n%s\nbefore the agent:\n%s", s.iptables, before.iptables)
	}
	for _, word := range []string{"KEELSON", "keelson", "CNI-DN-"} {
		if strings.Contains(s.nft, word) {
			t.Errorf("nft ruleset still mentions %s:\n%s", word, s.nft)
		}
	}
}

// mountsUnder lists the mount points below dir in /proc/self/mountinfo.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// cgroupProcs lists the processes in the cgroups under root, if any.
func cgroupProcs(root string) string {
	var procs []string
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup", root), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			if b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs")); len(strings.TrimSpace(string(b))) > 0 {
				procs = append(procs, p+": "+strings.Join(strings.Fields(string(b)), " "))
			}
		}
		return nil
	})
	return strings.Join(procs, "; ")
}
