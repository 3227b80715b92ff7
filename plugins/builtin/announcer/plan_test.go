package announcer

import (
	"fmt"
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func node(name string, ready bool, labels map[string]string) *v1.Node {
	st := v1.ConditionFalse
	if ready {
		st = v1.ConditionTrue
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: st}}}}
}

func lbService(name string, local bool, ips ...string) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer}}
	if local {
		s.Spec.ExternalTrafficPolicy = v1.ServiceExternalTrafficPolicyLocal
	}
	for _, ip := range ips {
		s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
	}
	return s
}

func slice(svc string, nodeReady map[string]bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-x", Labels: map[string]string{discoveryv1.LabelServiceName: svc}}}
	for n, r := range nodeReady {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{NodeName: ptr.To(n), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
	}
	return s
}

func owners(plan []Assignment) map[string]string {
	out := map[string]string{}
	for _, a := range plan {
		out[a.Service+"/"+a.IP.String()] = a.Node
	}
	return out
}

func TestPlanEligibility(t *testing.T) {
	three := []*v1.Node{node("a", true, nil), node("b", true, nil), node("c", true, nil)}
	tests := []struct {
		name  string
		world World
		want  map[string][]string // service/ip -> acceptable owners ("" = none)
	}{
		{"any ready node", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")}, Nodes: three},
			map[string][]string{"ns/web/10.0.0.200": {"a", "b", "c"}}},
		{"dead in gossip", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")}, Nodes: three,
			Alive: map[string]bool{"b": true}}, map[string][]string{"ns/web/10.0.0.200": {"b"}}},
		{"not ready", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")},
			Nodes: []*v1.Node{node("a", false, nil), node("b", true, nil)}}, map[string][]string{"ns/web/10.0.0.200": {"b"}}},
		{"excluded", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")},
			Nodes: []*v1.Node{node("a", true, map[string]string{LabelExcludeFromLB: ""}), node("b", true, nil)}},
			map[string][]string{"ns/web/10.0.0.200": {"b"}}},
		{"outside the node selector", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")}, NodeSelector: map[string]string{"lb": "yes"},
			Nodes: []*v1.Node{node("a", true, nil), node("b", true, map[string]string{"lb": "yes"})}},
			map[string][]string{"ns/web/10.0.0.200": {"b"}}},
		{"local policy needs a ready local endpoint", World{Services: []*v1.Service{lbService("web", true, "10.0.0.200")}, Nodes: three,
			Slices: []*discoveryv1.EndpointSlice{slice("web", map[string]bool{"a": false, "c": true})}},
			map[string][]string{"ns/web/10.0.0.200": {"c"}}},
		{"local policy without endpoints", World{Services: []*v1.Service{lbService("web", true, "10.0.0.200")}, Nodes: three},
			map[string][]string{"ns/web/10.0.0.200": {""}}},
		{"nobody alive", World{Services: []*v1.Service{lbService("web", false, "10.0.0.200")}, Nodes: three, Alive: map[string]bool{}},
			map[string][]string{"ns/web/10.0.0.200": {""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := owners(Plan(tt.world))
			if len(got) != len(tt.want) {
				t.Fatalf("Plan assigned %v; want keys of %v", got, tt.want)
			}
			for k, ok := range tt.want {
				if !containsStr(ok, got[k]) {
					t.Errorf("%s announced by %q; want one of %q", k, got[k], ok)
				}
			}
		})
	}
}

func containsStr(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestPlanSkipsOtherClassesPendingAndProxyMode(t *testing.T) {
	other := lbService("other", false, "10.0.0.1")
	other.Spec.LoadBalancerClass = ptr.To("example.com/lb")
	pending := lbService("pending", false)
	proxy := lbService("proxy", false, "10.0.0.3")
	proxy.Status.LoadBalancer.Ingress[0].IPMode = ptr.To(v1.LoadBalancerIPModeProxy)
	cluster := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cip"}, Spec: v1.ServiceSpec{Type: v1.ServiceTypeClusterIP}}
	plan := Plan(World{Services: []*v1.Service{other, pending, proxy, cluster}, Nodes: []*v1.Node{node("a", true, nil)}})
	if len(plan) != 0 {
		t.Errorf("Plan = %v; want nothing: another class, no IP, a proxy-mode IP and a ClusterIP Service are not announced", plan)
	}
}

// TestPlanLeavesNodeAddressesToTheirNodes: with no pool the built-in
// provider gives a LoadBalancer Service the nodes' own addresses. Another
// node answering ARP for one of them took that node's traffic (e2e/cluster:
// `kubectl exec` to a pod on agent a2 hung, its kubelet port's handshake
// routed through a1, whose conntrack dropped the stray ACKs).
func TestPlanLeavesNodeAddressesToTheirNodes(t *testing.T) {
	a, b := node("a", true, nil), node("b", false, nil)
	a.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.11"}, {Type: v1.NodeHostName, Address: "a"}}
	b.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeExternalIP, Address: "10.0.0.12"}}
	svc := lbService("ingress", false, "10.0.0.11", "10.0.0.12", "10.0.0.200")
	got := owners(Plan(World{Services: []*v1.Service{svc}, Nodes: []*v1.Node{a, b}}))
	if len(got) != 1 || got["ns/ingress/10.0.0.200"] != "a" {
		t.Errorf("Plan = %v; want only 10.0.0.200 (announced by a): 10.0.0.11 and 10.0.0.12 are nodes' own addresses", got)
	}
}

// Every node computing the plan from the same view must agree, whatever
// order its caches list objects in, and a node leaving must move only the
// IPs it held.
func TestPlanIsDeterministicAndMovesOnlyTheLostNodesIPs(t *testing.T) {
	var svcs []*v1.Service
	for i := 0; i < 60; i++ {
		svcs = append(svcs, lbService(fmt.Sprintf("s%d", i), false, fmt.Sprintf("10.0.%d.%d", i/200, i%200+1)))
	}
	nodes := []*v1.Node{node("a", true, nil), node("b", true, nil), node("c", true, nil), node("d", true, nil)}
	reversed := []*v1.Node{nodes[3], nodes[2], nodes[1], nodes[0]}
	before := owners(Plan(World{Services: svcs, Nodes: nodes}))
	if again := owners(Plan(World{Services: svcs, Nodes: reversed})); fmt.Sprint(again) != fmt.Sprint(before) {
		t.Fatalf("plan depends on listing order:\n%v\n%v", before, again)
	}
	per := map[string]int{}
	for _, n := range before {
		per[n]++
	}
	for _, n := range []string{"a", "b", "c", "d"} {
		if per[n] == 0 {
			t.Errorf("node %s announces none of 60 IPs (%v): the hash does not spread", n, per)
		}
	}
	after := owners(Plan(World{Services: svcs, Nodes: nodes, Alive: map[string]bool{"a": true, "c": true, "d": true}}))
	for k, was := range before {
		switch {
		case after[k] == "b" || after[k] == "":
			t.Errorf("%s still on dead node b or unassigned (%q)", k, after[k])
		case was != "b" && after[k] != was:
			t.Errorf("%s moved from %s to %s though %s is alive", k, was, after[k], was)
		}
	}
}

func TestLocalEndpoints(t *testing.T) {
	s := slice("web", map[string]bool{"a": true, "b": false})
	if n := LocalEndpoints([]*discoveryv1.EndpointSlice{s}, "ns/web", "a"); n != 1 {
		t.Errorf("ready endpoints on a = %d; want 1", n)
	}
	if n := LocalEndpoints([]*discoveryv1.EndpointSlice{s}, "ns/web", "b"); n != 0 {
		t.Errorf("ready endpoints on b = %d; want 0 (not ready)", n)
	}
}

func TestByInterface(t *testing.T) {
	ifcs := []ifaceAddrs{
		{prefixes: []netip.Prefix{netip.MustParsePrefix("10.99.1.11/24"), netip.MustParsePrefix("fd00:99::11/64"), netip.MustParsePrefix("fe80::1/64")}},
		{prefixes: []netip.Prefix{netip.MustParsePrefix("10.42.0.1/24"), netip.MustParsePrefix("fe80::2/64")}},
	}
	ifcs[0].ifc.Name, ifcs[1].ifc.Name = "eth0", "cni0"
	got, unplaced := byInterface(ifcs, []netip.Addr{netip.MustParseAddr("10.99.1.200"), netip.MustParseAddr("192.168.9.9"),
		netip.MustParseAddr("fd00:99::200"), netip.MustParseAddr("fe80::99"), netip.MustParseAddr("fd00:1::5")})
	if len(got) != 2 || !got["eth0/arp"][netip.MustParseAddr("10.99.1.200")] || !got["eth0/ndp"][netip.MustParseAddr("fd00:99::200")] {
		t.Errorf("placed %v; want 10.99.1.200 (ARP) and fd00:99::200 (NDP) on eth0 only", got)
	}
	if fmt.Sprint(unplaced) != "[192.168.9.9 fe80::99 fd00:1::5]" {
		t.Errorf("unplaced %v; want the addresses on no subnet (a link-local one never placed)", unplaced)
	}
	if ll := ifcs[0].linkLocal(); ll != netip.MustParseAddr("fe80::1") {
		t.Errorf("link-local of eth0 = %v", ll)
	}
}

// TestTrimNodeKeepsWhatThePlanReads: the trimmed Node plans like the
// whole one, and drops the rest.
func TestTrimNodeKeepsWhatThePlanReads(t *testing.T) {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "a1", Labels: map[string]string{"zone": "z1"}},
		Status: v1.NodeStatus{
			Addresses:  []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}},
			Conditions: []v1.NodeCondition{{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse}, {Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
			Images:     []v1.ContainerImage{{Names: []string{"busybox"}, SizeBytes: 1}},
		}}
	obj, err := trimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*v1.Node)
	if !ready(got) || got.Labels["zone"] != "z1" || len(got.Status.Addresses) != 1 || got.Name != "a1" {
		t.Errorf("trimmed node %+v lost what the plan reads", got)
	}
	if len(got.Status.Images) != 0 || len(got.Status.Conditions) != 1 || !got.Status.Conditions[0].LastHeartbeatTime.IsZero() {
		t.Errorf("trimmed node kept images, other conditions or heartbeat times: %+v", got.Status)
	}
}
