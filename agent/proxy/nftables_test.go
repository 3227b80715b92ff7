package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/internal/testnet"
)

// TestNFTablesConnectivity programs the nftables mode in a private network
// namespace (the node) with two veth-attached namespaces: a pod
// (10.244.1.2, serving HTTP on 8080) and an outside client (192.168.5.2).
// Real connections reach the pod through a cluster IP from the node and
// through a node port from outside; a service without endpoints refuses;
// an endpoint change, a restart with leftovers and the cleanup behave.
func TestNFTablesConnectivity(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft (scripts/install-deps.sh installs nftables)")
	}
	ctx := context.Background()
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	netnstest.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The node's own connections need a route to cluster IPs before DNAT.
	attach(t, "up", "198.18.0.1", "198.18.0.2")
	netnstest.Run(t, "ip", "route", "add", "default", "via", "198.18.0.2")
	pod := attach(t, "pod", "10.244.1.1", "10.244.1.2")
	outside := attach(t, "out", "192.168.5.1", "192.168.5.2")
	serveIn(t, pod, "10.244.1.2:8080")

	services := []*v1.Service{
		svc("default", "web", "10.96.0.20", nodePort(30080)),
		svc("default", "empty", "10.96.0.21"),
		svc("default", "sticky", "10.96.0.22", func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }),
	}
	slices := []*discovery.EndpointSlice{
		slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1")),
		slice("default", "sticky", "sticky-1", 8080, readyEP("10.244.1.2", "n1")),
	}
	dp, err := newNFTDataplane(v1.IPv4Protocol, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	sync := func(full bool) dataplaneStats {
		t.Helper()
		ports, _ := Snapshot(services, slices, "n1", v1.IPv4Protocol)
		st, err := dp.sync(ctx, viewOf(ports), full)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	sync(true)

	for _, c := range []struct{ what, ns, addr, want string }{
		{"the node to a cluster IP", "", "10.96.0.20:80", "10.244.1.1"}, // masqueraded: the node is not a pod
		{"outside to a node port", outside, "192.168.5.1:30080", "10.244.1.1"},
		{"the node to an affinity service", "", "10.96.0.22:80", "10.244.1.1"},
		// Hairpin: the pod reaching itself is masqueraded (else its reply
		// would go straight to itself, from the wrong address), through
		// the hairpin set or, with affinity, its endpoint chain.
		{"the pod to itself through its service", pod, "10.96.0.20:80", "10.244.1.1"},
		{"the pod to itself through an affinity service", pod, "10.96.0.22:80", "10.244.1.1"},
	} {
		if got, err := httpGet(c.ns, c.addr); err != nil || got != c.want {
			t.Errorf("%s (%s): %q, %v; want the pod to answer and see %s", c.what, c.addr, got, err, c.want)
		}
	}
	if _, err := httpGet("", "10.96.0.21:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a service without endpoints: %v, want connection refused", err)
	}

	// The endpoint moves to a port nothing listens on: the service now
	// refuses, and only an element of the endpoints map was written.
	slices[0] = slice("default", "web", "web-1", 8081, readyEP("10.244.1.2", "n1"))
	if st := sync(false); st.chains != 0 {
		t.Errorf("an endpoint change wrote %d chains, want none (an endpoints-map element)", st.chains)
	}
	if _, err := httpGet("", "10.96.0.20:80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after the change: %v, want refused by the pod (port 8081)", err)
	}
	slices[0] = slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"))
	sync(false)
	if got, err := httpGet(outside, "192.168.5.1:30080"); err != nil || got != "10.244.1.1" {
		t.Errorf("back to 8080, node port: %q, %v", got, err)
	}

	// A restarted agent (nothing known) finds the table and replaces it:
	// the deleted services are gone, the kept one still works.
	dp, err = newNFTDataplane(v1.IPv4Protocol, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	services, slices = services[:1], slices[:1]
	sync(false)
	if out := netnstest.Run(t, "nft", "list", "table", "ip", NFTTableName); strings.Contains(out, "10.96.0.22") || strings.Contains(out, "aff-") {
		t.Errorf("a restarted proxy left a deleted service:\n%s", out)
	}
	if got, err := httpGet("", "10.96.0.20:80"); err != nil || got != "10.244.1.1" {
		t.Errorf("after the restart: %q, %v", got, err)
	}

	if err := Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Fatal(err)
	}
	if out := netnstest.Run(t, "nft", "list", "tables"); strings.Contains(out, NFTTableName) {
		t.Errorf("cleanup left the table:\n%s", out)
	}
	if err := Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// attach creates a network namespace joined to this one by a veth pair,
// hostIP here and nsIP there.
func attach(t *testing.T, role, hostIP, nsIP string) string {
	return netnstest.Attach(t, "kpx", role, hostIP, nsIP)
}

// serveIn answers HTTP on addr in ns with the client's address.
func serveIn(t *testing.T, ns, addr string) {
	var l net.Listener
	if err := testnet.InNamespace(ns, func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprint(w, host)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// httpGet fetches http://addr/ from ns.
func httpGet(ns, addr string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (c net.Conn, err error) {
			err = testnet.InNamespace(ns, func() error { c, err = net.DialTimeout(network, a, 3*time.Second); return err })
			return c, err
		}}}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestNFTablesProgramsAThousandServices installs 1,000 services in one
// transaction (their map elements take several netlink messages: one
// attribute holds at most 64 KiB), then changes one endpoint by
// difference.
func TestNFTablesProgramsAThousandServices(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	ctx := context.Background()
	svcs, sl := benchCluster(1000)
	dp, err := newNFTDataplane(v1.IPv4Protocol, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ports, _ := Snapshot(svcs, sl, "n1", v1.IPv4Protocol)
	if _, err := dp.sync(ctx, viewOf(ports), true); err != nil {
		t.Fatal(err)
	}
	out := netnstest.Run(t, "nft", "list", "map", "ip", NFTTableName, nftServiceIPs)
	if n := strings.Count(out, ": goto svc-"); n != 1000 {
		t.Errorf("service-ips holds %d elements, want 1000", n)
	}
	sl[500].Endpoints[0].Addresses = []string{"10.250.0.1"}
	ports, _ = Snapshot(svcs, sl, "n1", v1.IPv4Protocol)
	st, err := dp.sync(ctx, viewOf(ports), false)
	if err != nil {
		t.Fatal(err)
	}
	if st.chains != 0 {
		t.Errorf("one endpoint replaced wrote %d chains, want none (an endpoints-map element)", st.chains)
	}
	out = netnstest.Run(t, "nft", "list", "table", "ip", NFTTableName)
	if !strings.Contains(out, ": 10.250.0.1 . 8080") || strings.Count(out, " . 8080") != 5000 {
		t.Errorf("the endpoints maps lack the new endpoint or do not hold 5,000 endpoints:\n%.2000s", out)
	}
	// Blocks of 8 (5 endpoints), 256 indexes a map.
	if n := strings.Count(out, "\tmap endpoints-"); n != (1000*8+255)/256 {
		t.Errorf("%d endpoints maps, want %d", n, (1000*8+255)/256)
	}
}

// TestNFTablesIPv6 programs an IPv6 table (the endpoints maps' values are
// a 16-byte address and a port, in registers 1 and 12) and makes real
// connections through a cluster IP: from the node, and from the pod to
// itself (hairpin, masqueraded through the hairpin set).
func TestNFTablesIPv6(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	netnstest.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	pod, here := "kpx-pod6-"+hex.EncodeToString(b), "kpxp6"+hex.EncodeToString(b)
	netnstest.Run(t, "ip", "netns", "add", pod)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
	netnstest.Run(t, "ip", "link", "add", here, "type", "veth", "peer", "name", "eth0", "netns", pod)
	netnstest.Run(t, "ip", "-6", "addr", "add", "fd00:244:1::1/64", "dev", here, "nodad")
	netnstest.Run(t, "ip", "link", "set", here, "up")
	for _, args := range [][]string{
		{"-6", "addr", "add", "fd00:244:1::2/64", "dev", "eth0", "nodad"}, {"link", "set", "eth0", "up"}, {"link", "set", "lo", "up"},
		{"-6", "route", "add", "default", "via", "fd00:244:1::1"},
	} {
		netnstest.Run(t, "ip", append([]string{"-n", pod}, args...)...)
	}
	// The node's own connections need a route to cluster IPs before DNAT.
	netnstest.Run(t, "ip", "-6", "route", "add", "fd00:96::/64", "via", "fd00:244:1::2")
	serveIn(t, pod, "[fd00:244:1::2]:8080")

	cfg := testConfig()
	cfg.Family, cfg.ClusterCIDR = v1.IPv6Protocol, netip.MustParsePrefix("fd00:244::/32")
	dp, err := newNFTDataplane(v1.IPv6Protocol, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := svc("default", "web", "fd00:96::20", func(s *v1.Service) { s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol} })
	sl := slice("default", "web", "web-1", 8080, readyEP("fd00:244:1::2", "n1"))
	sl.AddressType = discovery.AddressTypeIPv6
	ports, problems := Snapshot([]*v1.Service{s}, []*discovery.EndpointSlice{sl}, "n1", v1.IPv6Protocol)
	if len(ports) != 1 {
		t.Fatalf("IPv6 snapshot: %v, %v", ports, problems)
	}
	if _, err := dp.sync(context.Background(), viewOf(ports), true); err != nil {
		t.Fatal(err)
	}
	out := netnstest.Run(t, "nft", "list", "table", "ip6", NFTTableName)
	if !strings.Contains(out, ": fd00:244:1::2 . 8080") {
		t.Errorf("the endpoints map lacks the endpoint:\n%s", out)
	}
	for _, c := range []struct{ what, ns string }{{"the node", ""}, {"the pod itself (hairpin)", pod}} {
		if got, err := httpGet(c.ns, "[fd00:96::20]:80"); err != nil || got != "fd00:244:1::1" {
			t.Errorf("%s to the cluster IP: %q, %v; want the pod to answer and see fd00:244:1::1", c.what, got, err)
		}
	}
	if err := Cleanup(context.Background(), []v1.IPFamily{v1.IPv6Protocol}); err != nil {
		t.Fatal(err)
	}
}
