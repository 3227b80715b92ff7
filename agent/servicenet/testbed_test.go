package servicenet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/internal/testnet"
)

// testbed is a small cluster network made of network namespaces: a bridge
// in the root namespace (the "LAN", where the test process and the API
// server live at .1), one namespace per node attached to it, and in each
// node a bridge with the node's pod CIDR and one namespace per pod. It is
// what the agent and its CNI plugins build on real machines, built here
// with ip(8) so that the service networking runs on top of it unchanged.
// Everything is removed when the test ends; nothing leaves the machine
// (no default route anywhere).
type testbed struct {
	t      *testing.T
	id     string
	subnet string // "10.98.X"
	bridge string
	nodes  []*tbNode
	pods   []*tbPod
}

type tbNode struct {
	name    string
	ns      string
	ip      string // on the LAN
	podCIDR string // "10.244.N.0/24"
	gateway string // "10.244.N.1"
	pods    int
}

type tbPod struct {
	name, ns, ip string
	node         *tbNode
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newTestbed creates the LAN and n nodes; node i (from 1) gets pod CIDR
// 10.244.i.0/24 (namespaces are private, so fixed ranges cannot clash).
func newTestbed(t *testing.T, n int) *testbed {
	tb := &testbed{t: t, id: randomHex(t, 2)}
	tb.subnet = tb.freeSubnet()
	tb.bridge = "knwb" + tb.id
	t.Cleanup(tb.destroy)
	run(t, "ip", "link", "add", tb.bridge, "type", "bridge")
	run(t, "ip", "addr", "add", tb.subnet+".1/24", "dev", tb.bridge)
	run(t, "ip", "link", "set", tb.bridge, "up")
	for i := 1; i <= n; i++ {
		node := &tbNode{name: fmt.Sprintf("n%d", i), ns: fmt.Sprintf("knw-%s-n%d", tb.id, i), ip: fmt.Sprintf("%s.%d", tb.subnet, 10+i),
			podCIDR: fmt.Sprintf("10.244.%d.0/24", i), gateway: fmt.Sprintf("10.244.%d.1", i)}
		tb.nodes = append(tb.nodes, node)
		host, peer := fmt.Sprintf("knw%s%d", tb.id, i), fmt.Sprintf("knwp%s%d", tb.id, i)
		run(t, "ip", "netns", "add", node.ns)
		run(t, "ip", "link", "add", host, "type", "veth", "peer", "name", peer)
		run(t, "ip", "link", "set", host, "master", tb.bridge, "up")
		run(t, "ip", "link", "set", peer, "netns", node.ns)
		run(t, "ip", "-n", node.ns, "link", "set", peer, "name", "eth0")
		run(t, "ip", "-n", node.ns, "addr", "add", node.ip+"/24", "dev", "eth0")
		run(t, "ip", "-n", node.ns, "link", "set", "eth0", "up")
		run(t, "ip", "-n", node.ns, "link", "set", "lo", "up")
		// The node's pod bridge, as the CNI bridge plugin makes it.
		run(t, "ip", "-n", node.ns, "link", "add", "cbr0", "type", "bridge")
		run(t, "ip", "-n", node.ns, "addr", "add", node.gateway+"/24", "dev", "cbr0")
		run(t, "ip", "-n", node.ns, "link", "set", "cbr0", "up")
	}
	return tb
}

func (tb *testbed) freeSubnet() string {
	out := run(tb.t, "ip", "-4", "-o", "addr", "show")
	for range 100 {
		x, err := rand.Int(rand.Reader, big.NewInt(250))
		if err != nil {
			tb.t.Fatal(err)
		}
		s := fmt.Sprintf("10.98.%d", x.Int64()+2)
		if !strings.Contains(out, " "+s+".") {
			return s
		}
	}
	tb.t.Fatal("no free 10.98.X.0/24")
	return ""
}

// addPod makes a pod namespace on node with the next address of its CIDR.
func (tb *testbed) addPod(node *tbNode, name string) *tbPod {
	node.pods++
	idx := node.pods + 1
	p := &tbPod{name: name, ns: fmt.Sprintf("knw-%s-%s", tb.id, name), node: node,
		ip: strings.TrimSuffix(node.podCIDR, "0/24") + fmt.Sprint(idx)}
	host, peer := fmt.Sprintf("veth%s%d", node.name, idx), fmt.Sprintf("ceth%s%d", node.name, idx)
	run(tb.t, "ip", "netns", "add", p.ns)
	run(tb.t, "ip", "-n", node.ns, "link", "add", host, "type", "veth", "peer", "name", peer)
	run(tb.t, "ip", "-n", node.ns, "link", "set", host, "master", "cbr0", "up")
	// Hairpin lets a pod reach itself through a service (as the CNI
	// bridge plugin's hairpinMode does).
	run(tb.t, "ip", "-n", node.ns, "link", "set", host, "type", "bridge_slave", "hairpin", "on")
	run(tb.t, "ip", "-n", node.ns, "link", "set", peer, "netns", p.ns)
	run(tb.t, "ip", "-n", p.ns, "link", "set", peer, "name", "eth0")
	run(tb.t, "ip", "-n", p.ns, "addr", "add", p.ip+"/24", "dev", "eth0")
	run(tb.t, "ip", "-n", p.ns, "link", "set", "eth0", "up")
	run(tb.t, "ip", "-n", p.ns, "link", "set", "lo", "up")
	run(tb.t, "ip", "-n", p.ns, "route", "add", "default", "via", node.gateway)
	tb.pods = append(tb.pods, p)
	return p
}

func (tb *testbed) destroy() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(out), "\n") {
		name := strings.Fields(line + " ")
		if len(name) > 0 && strings.HasPrefix(name[0], "knw-"+tb.id+"-") {
			if out, err := exec.Command("ip", "netns", "del", name[0]).CombinedOutput(); err != nil {
				tb.t.Logf("cleanup: ip netns del %s: %v: %s", name[0], err, out)
			}
		}
	}
	for i := range tb.nodes {
		_ = exec.Command("ip", "link", "del", fmt.Sprintf("knw%s%d", tb.id, i+1)).Run()
	}
	if out, err := exec.Command("ip", "link", "del", tb.bridge).CombinedOutput(); err != nil {
		tb.t.Logf("cleanup: ip link del %s: %v: %s", tb.bridge, err, out)
	}
}

// serveHTTP runs an HTTP server in the pod answering "<pod> <client ip>".
func (p *tbPod) serveHTTP(t *testing.T, port int) {
	var l net.Listener
	if err := testnet.InNamespace(p.ns, func() (err error) {
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "%s %s", p.name, host)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// serveUDP runs a UDP server in the pod answering every datagram with the
// pod's name.
func (p *tbPod) serveUDP(t *testing.T, port int) {
	var pc net.PacketConn
	if err := testnet.InNamespace(p.ns, func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 512)
		for {
			_, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(p.name), addr)
		}
	}()
	t.Cleanup(func() { _ = pc.Close() })
}

// dial connects from inside network namespace ns.
func dial(ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := testnet.InNamespace(ns, func() (err error) {
		c, err = net.DialTimeout(network, addr, 3*time.Second)
		return err
	})
	return c, err
}

// get fetches http://addr/ from inside ns and returns the body.
func get(ns, addr string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			if ns == "" {
				return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, a)
			}
			return dial(ns, network, a)
		},
	}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b := make([]byte, 256)
	n, _ := resp.Body.Read(b)
	return string(b[:n]), nil
}

// udpAsk sends one datagram from inside ns and returns the answer.
func udpAsk(ns, addr string) (string, error) {
	c, err := dial(ns, "udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	b := make([]byte, 256)
	n, err := c.Read(b)
	return string(b[:n]), err
}

// eventually retries f until it succeeds or the (generous) timeout passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after 90s: %v", what, err)
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and iptables (CI runs as root)")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s (scripts/install-deps.sh installs it): %v", bin, err)
		}
	}
}
