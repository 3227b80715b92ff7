package ha

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Network is a bridge in the root namespace and one network namespace per
// host attached to it by a veth pair. The bridge holds the .1 address of the
// /24, so the test process reaches every namespace; there is no default
// route anywhere, so nothing it carries can leave the machine.
type Network struct {
	id     string // random hex, part of every name
	subnet string // "10.99.X"
	bridge string
	hosts  []*Host
}

// Host is one network namespace with its address on the bridge.
type Host struct {
	Name string // short name, e.g. "s1"
	NS   string // namespace name
	IP   string
	veth string // root-side end of the veth pair
}

// RequireNetns skips the test unless it runs as root with `ip netns`.
func RequireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("e2e/ha needs root to create network namespaces and a bridge (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("e2e/ha needs `ip` (iproute2) for network namespaces: " + err.Error())
	}
	if out, err := exec.Command("ip", "netns", "list").CombinedOutput(); err != nil {
		t.Skipf("`ip netns` is unavailable: %v: %s", err, out)
	}
}

// RequireIptables skips the test unless iptables is installed.
func RequireIptables(t testing.TB) {
	t.Helper()
	if !haveIptables() {
		t.Skip("partition scenarios need iptables (scripts/install-deps.sh installs it)")
	}
}

func haveIptables() bool {
	_, err := exec.LookPath("iptables")
	return err == nil
}

// NewNetwork creates a bridge and one namespace per name, all removed when
// the test ends (also on failure). Register it before anything that runs
// inside the namespaces, so that cleanup runs after those have stopped.
func NewNetwork(t testing.TB, names ...string) *Network {
	t.Helper()
	RequireNetns(t)
	n := &Network{id: randomHex(t, 2)}
	n.subnet = n.freeSubnet(t)
	n.bridge = "kbr-" + n.id
	t.Cleanup(func() { n.destroy(t) })

	mustRun(t, "ip", "link", "add", n.bridge, "type", "bridge")
	mustRun(t, "ip", "addr", "add", n.subnet+".1/24", "dev", n.bridge)
	mustRun(t, "ip", "link", "set", n.bridge, "up")
	for i, name := range names {
		h := &Host{
			Name: name,
			NS:   fmt.Sprintf("kha-%s-%s", n.id, name),
			IP:   fmt.Sprintf("%s.%d", n.subnet, 11+i),
			veth: fmt.Sprintf("kv%s%d", n.id, i),
		}
		peer := fmt.Sprintf("kp%s%d", n.id, i)
		n.hosts = append(n.hosts, h)
		mustRun(t, "ip", "netns", "add", h.NS)
		mustRun(t, "ip", "link", "add", h.veth, "type", "veth", "peer", "name", peer)
		mustRun(t, "ip", "link", "set", h.veth, "master", n.bridge)
		mustRun(t, "ip", "link", "set", h.veth, "up")
		mustRun(t, "ip", "link", "set", peer, "netns", h.NS)
		mustRun(t, "ip", "-n", h.NS, "link", "set", peer, "name", "eth0")
		mustRun(t, "ip", "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
		mustRun(t, "ip", "-n", h.NS, "link", "set", "eth0", "up")
		mustRun(t, "ip", "-n", h.NS, "link", "set", "lo", "up")
	}
	t.Logf("network %s: bridge %s %s.1/24, hosts %s", n.id, n.bridge, n.subnet, n.describe())
	return n
}

// Hosts returns the namespaces in creation order.
func (n *Network) Hosts() []*Host { return n.hosts }

// Host returns the host called name, or nil.
func (n *Network) Host(name string) *Host {
	for _, h := range n.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// BridgeIP is the test process's own address on the bridge.
func (n *Network) BridgeIP() string { return n.subnet + ".1" }

func (n *Network) describe() string {
	var s []string
	for _, h := range n.hosts {
		s = append(s, h.Name+"="+h.IP)
	}
	return strings.Join(s, " ")
}

// freeSubnet picks a 10.99.X.0/24 no interface of this machine uses yet, so
// parallel tests (and other users of the machine) never share addresses.
func (n *Network) freeSubnet(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip addr show: %v: %s", err, out)
	}
	for range 100 {
		x, err := rand.Int(rand.Reader, big.NewInt(250))
		if err != nil {
			t.Fatalf("random subnet: %v", err)
		}
		subnet := fmt.Sprintf("10.99.%d", x.Int64()+2)
		if !strings.Contains(string(out), " "+subnet+".") {
			return subnet
		}
	}
	t.Fatalf("no free 10.99.X.0/24 subnet found")
	return ""
}

// destroy removes the namespaces (their veth ends and iptables rules go
// with them) and the bridge. It logs failures instead of stopping, so that
// one leftover does not keep the others.
func (n *Network) destroy(t testing.TB) {
	for _, h := range n.hosts {
		if out, err := exec.Command("ip", "netns", "del", h.NS).CombinedOutput(); err != nil {
			t.Logf("cleanup: ip netns del %s: %v: %s", h.NS, err, out)
		}
		// Normally gone with the namespace; a half-created pair is not.
		_ = exec.Command("ip", "link", "del", h.veth).Run()
	}
	if out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput(); err != nil {
		t.Logf("cleanup: ip link del %s: %v: %s", n.bridge, err, out)
	}
}

// Exec runs a command inside the host's namespace and returns its combined
// output.
func (h *Host) Exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.NS}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", h.NS, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Block drops packets between h and the peers inside h's namespace: "in"
// drops what h receives from them, "out" what h sends to them. Both together
// are a two-way partition. The test process (the bridge address) is never
// blocked, so clients still reach every server.
func (h *Host) Block(in, out bool, peers ...*Host) error {
	for _, p := range peers {
		if in {
			if _, err := h.Exec("iptables", "-w", "-I", "INPUT", "-s", p.IP, "-m", "comment", "--comment", blockComment, "-j", "DROP"); err != nil {
				return err
			}
		}
		if out {
			if _, err := h.Exec("iptables", "-w", "-I", "OUTPUT", "-d", p.IP, "-m", "comment", "--comment", blockComment, "-j", "DROP"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Unplug sets the bridge end of the host's veth pair down, as if its
// cable were pulled: the host keeps its address and its processes run, but
// every packet to or from it is lost, whoever the peer (the test process
// included). Plug puts the cable back.
func (h *Host) Unplug() error { return h.setLink("down") }

// Plug undoes Unplug.
func (h *Host) Plug() error { return h.setLink("up") }

func (h *Host) setLink(state string) error {
	if out, err := exec.Command("ip", "link", "set", h.veth, state).CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s %s (host %s): %w: %s", h.veth, state, h.Name, err, out)
	}
	return nil
}

// Unblock removes every rule Block added in h's namespace.
func (h *Host) Unblock() error {
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		rules, err := h.Exec("iptables", "-w", "-S", chain)
		if err != nil {
			return err
		}
		for _, rule := range strings.Split(rules, "\n") {
			if !strings.Contains(rule, blockComment) {
				continue
			}
			// "-A INPUT -s ... -j DROP" deleted as "-D INPUT -s ... -j DROP".
			args := strings.Fields(strings.Replace(rule, "-A ", "-D ", 1))
			if _, err := h.Exec(append([]string{"iptables", "-w"}, args...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// blockComment marks the rules Block inserts, so that Unblock removes
// those alone (an agent's service proxy has rules of its own there).
const blockComment = "keelson-e2e-block"

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}
