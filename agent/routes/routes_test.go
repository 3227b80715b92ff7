package routes

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/agent/internal/netnstest"
)

func node(name string, cidrs []string, addrs ...v1.NodeAddress) *v1.Node {
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{PodCIDRs: cidrs}, Status: v1.NodeStatus{Addresses: addrs}}
}

func internal(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip} }

func TestDesired(t *testing.T) {
	nodes := []*v1.Node{
		node("n1", []string{"10.244.1.0/24"}, internal("192.168.5.11")),
		node("n2", []string{"10.244.2.0/24", "fd00:244:2::/64"}, v1.NodeAddress{Type: v1.NodeHostName, Address: "n2"},
			internal("192.168.5.12"), internal("fd00::12")),
		node("n3", nil, internal("192.168.5.13")),                                                              // no CIDR yet
		node("n4", []string{"10.244.4.0/24"}, v1.NodeAddress{Type: v1.NodeExternalIP, Address: "203.0.113.4"}), // no internal IP
		node("n5", []string{"10.244.5.1/24"}, internal("192.168.5.15")),                                        // host bits set
	}
	got, problems := Desired(nodes, "n1")
	want := []Route{
		{Dst: netip.MustParsePrefix("10.244.2.0/24"), Via: netip.MustParseAddr("192.168.5.12"), Node: "n2"},
		{Dst: netip.MustParsePrefix("10.244.5.0/24"), Via: netip.MustParseAddr("192.168.5.15"), Node: "n5"},
		{Dst: netip.MustParsePrefix("fd00:244:2::/64"), Via: netip.MustParseAddr("fd00::12"), Node: "n2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if len(problems) != 1 || !strings.Contains(problems[0].Error(), "n4") {
		t.Errorf("problems = %v, want one naming n4", problems)
	}
}

// TestApplyKeepsKernelRoutesInStep programs routes in a private network
// namespace through netlink and checks what the kernel holds.
func TestApplyKeepsKernelRoutesInStep(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	netnstest.Run(t, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
	netnstest.Run(t, "ip", "link", "set", "lan0p", "up")
	netnstest.Run(t, "ip", "addr", "add", "192.168.77.1/24", "dev", "lan0")
	netnstest.Run(t, "ip", "link", "set", "lan0", "up")
	// A route of someone else's, which must survive.
	netnstest.Run(t, "ip", "route", "add", "10.99.0.0/16", "via", "192.168.77.50")
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	show := func() string { return strings.TrimSpace(netnstest.Run(t, "ip", "route", "show", "proto", "75")) }
	route := func(dst, via, node string) Route {
		return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via), Node: node}
	}
	log := slog.Default()

	if err := apply(h, []Route{route("10.244.2.0/24", "192.168.77.2", "n2"), route("10.244.3.0/24", "192.168.77.3", "n3")}, log); err != nil {
		t.Fatal(err)
	}
	if got := show(); got != "10.244.2.0/24 via 192.168.77.2 dev lan0 \n10.244.3.0/24 via 192.168.77.3 dev lan0" &&
		got != "10.244.2.0/24 via 192.168.77.2 dev lan0\n10.244.3.0/24 via 192.168.77.3 dev lan0" {
		t.Errorf("routes:\n%s", got)
	}
	// n2 changed address, n3 left.
	if err := apply(h, []Route{route("10.244.2.0/24", "192.168.77.22", "n2")}, log); err != nil {
		t.Fatal(err)
	}
	if got := show(); !strings.HasPrefix(got, "10.244.2.0/24 via 192.168.77.22 dev lan0") || strings.Contains(got, "10.244.3.0") {
		t.Errorf("routes after changes:\n%s", got)
	}
	// A node not on a connected network is refused and reported; the
	// others are still programmed.
	err = apply(h, []Route{route("10.244.2.0/24", "192.168.77.22", "n2"), route("10.244.9.0/24", "172.31.0.9", "n9")}, log)
	if err == nil || !strings.Contains(err.Error(), "n9") {
		t.Errorf("unreachable gateway: err = %v, want one naming n9", err)
	}
	if !strings.Contains(netnstest.Run(t, "ip", "route"), "10.99.0.0/16 via 192.168.77.50") {
		t.Error("a route the package does not own was touched")
	}
	if err := Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := show(); got != "" {
		t.Errorf("routes after cleanup:\n%s", got)
	}
}
