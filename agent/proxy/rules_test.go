package proxy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

var (
	nodeIP    = netip.MustParseAddr("192.168.5.11")
	podOnNode = netip.MustParseAddr("10.244.1.7")
	outsider  = netip.MustParseAddr("203.0.113.9")
	ep1       = "10.244.1.2:8080" // on this node (n1)
	ep2       = "10.244.2.2:8080" // on n2
)

func testConfig() RulesConfig {
	return RulesConfig{Family: v1.IPv4Protocol, ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"), MasqueradeMark: 0x4000, RandomFully: true}
}

func build(t *testing.T, cfg RulesConfig, services []*v1.Service, slices ...*discovery.EndpointSlice) *tracer {
	t.Helper()
	ports, problems := Snapshot(services, slices, "n1", v1.IPv4Protocol)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	return &tracer{t: t, rs: Rules(ports, cfg), local: []netip.Addr{nodeIP, netip.MustParseAddr("127.0.0.1")}}
}

func twoEndpoints() *discovery.EndpointSlice {
	return slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"), readyEP("10.244.2.2", "n2"))
}

func tcp(src, dst string, port int) pkt {
	return pkt{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: "tcp", dport: port}
}

func TestClusterIP(t *testing.T) {
	tr := build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20")}, twoEndpoints())
	// A pod reaches both endpoints, keeping its address (no NAT between pods).
	if got := tr.nat(tcp(podOnNode.String(), "10.96.0.20", 80)); !slices.Equal(got, []outcome{{ep1, false}, {ep2, false}}) {
		t.Errorf("pod -> cluster IP: %v", got)
	}
	// From outside the pod network (the node itself, another host) it is
	// masqueraded, so that replies come back through this node.
	if got := tr.nat(tcp(nodeIP.String(), "10.96.0.20", 80)); !slices.Equal(got, []outcome{{ep1, true}, {ep2, true}}) {
		t.Errorf("node -> cluster IP: %v", got)
	}
	// Another port of the address is not the service.
	if got := dnats(tr.nat(tcp(podOnNode.String(), "10.96.0.20", 81))); !slices.Equal(got, []string{""}) {
		t.Errorf("wrong port: %v", got)
	}
	if v := tr.filter(chainServices, tcp(podOnNode.String(), "10.96.0.20", 80)); v != "" {
		t.Errorf("filter verdict %q for a service with endpoints", v)
	}
	// A pod that is an endpoint reaching itself through the service
	// (hairpin) is masqueraded.
	for _, o := range tr.nat(tcp("10.244.1.2", "10.96.0.20", 80)) {
		if o.dnat == ep1 && !o.masq {
			t.Errorf("hairpin to itself not masqueraded: %v", o)
		}
	}
}

func TestServiceWithoutEndpointsRejects(t *testing.T) {
	notReady := slice("default", "web", "web-1", 8080, ep{ip: "10.244.1.2", node: "n1", ready: new(bool), serving: new(bool)})
	tr := build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080))}, notReady)
	if got := dnats(tr.nat(tcp(podOnNode.String(), "10.96.0.20", 80))); !slices.Equal(got, []string{""}) {
		t.Errorf("nat: %v, want untouched", got)
	}
	if v := tr.filter(chainServices, tcp(podOnNode.String(), "10.96.0.20", 80)); v != "REJECT" {
		t.Errorf("cluster IP verdict %q, want REJECT", v)
	}
	if v := tr.filter(chainExternalServices, tcp(outsider.String(), nodeIP.String(), 30080)); v != "REJECT" {
		t.Errorf("node port verdict %q, want REJECT", v)
	}
}

func TestNodePort(t *testing.T) {
	tr := build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080))}, twoEndpoints())
	if got := tr.nat(tcp(outsider.String(), nodeIP.String(), 30080)); !slices.Equal(got, []outcome{{ep1, true}, {ep2, true}}) {
		t.Errorf("outsider -> node port: %v, want both endpoints, masqueraded", got)
	}
	// Only addresses of this node have node ports; loopback is excluded.
	for _, dst := range []string{"192.168.5.99", "127.0.0.1"} {
		if got := dnats(tr.nat(tcp(outsider.String(), dst, 30080))); !slices.Equal(got, []string{""}) {
			t.Errorf("node port on %s: %v, want untouched", dst, got)
		}
	}
}

func TestNodePortAddresses(t *testing.T) {
	cfg := testConfig()
	cfg.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("192.168.5.0/24"), netip.MustParsePrefix("fd00::/64")}
	second := netip.MustParseAddr("172.16.0.11")
	tr := build(t, cfg, []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080))}, twoEndpoints())
	tr.local = append(tr.local, second)
	if got := dnats(tr.nat(tcp(outsider.String(), nodeIP.String(), 30080))); len(got) != 2 {
		t.Errorf("node port on an address in --nodeport-addresses: %v", got)
	}
	if got := dnats(tr.nat(tcp(outsider.String(), second.String(), 30080))); !slices.Equal(got, []string{""}) {
		t.Errorf("node port on a local address outside --nodeport-addresses: %v, want untouched", got)
	}
}

func TestExternalTrafficPolicyLocal(t *testing.T) {
	tr := build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080), externalLocal)}, twoEndpoints())
	// Outside clients keep their address and reach only this node's pods.
	if got := tr.nat(tcp(outsider.String(), nodeIP.String(), 30080)); !slices.Equal(got, []outcome{{ep1, false}}) {
		t.Errorf("outsider -> node port: %v, want the local endpoint without masquerade", got)
	}
	// Pods and the node are not external: every endpoint serves them.
	if got := dnats(tr.nat(tcp(podOnNode.String(), nodeIP.String(), 30080))); !slices.Equal(got, []string{ep1, ep2}) {
		t.Errorf("pod -> node port: %v", got)
	}
	p := tcp(nodeIP.String(), nodeIP.String(), 30080)
	p.srcLocal = true
	if got := tr.nat(p); !slices.Equal(got, []outcome{{ep1, true}, {ep2, true}}) {
		t.Errorf("node -> own node port: %v", got)
	}
	// The cluster IP is unaffected by the external policy.
	if got := dnats(tr.nat(tcp(podOnNode.String(), "10.96.0.20", 80))); !slices.Equal(got, []string{ep1, ep2}) {
		t.Errorf("pod -> cluster IP: %v", got)
	}

	// On a node without local endpoints, outside traffic is dropped.
	remoteOnly := slice("default", "web", "web-1", 8080, readyEP("10.244.2.2", "n2"))
	tr = build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080), externalLocal)}, remoteOnly)
	if got := dnats(tr.nat(tcp(outsider.String(), nodeIP.String(), 30080))); !slices.Equal(got, []string{""}) {
		t.Errorf("outsider -> node port without local endpoints: nat %v, want untouched", got)
	}
	if v := tr.filter(chainExternalServices, tcp(outsider.String(), nodeIP.String(), 30080)); v != "DROP" {
		t.Errorf("verdict %q, want DROP", v)
	}
	if got := dnats(tr.nat(tcp(podOnNode.String(), nodeIP.String(), 30080))); !slices.Equal(got, []string{ep2}) {
		t.Errorf("pod -> node port without local endpoints: %v, want the remote endpoint", got)
	}
}

func TestInternalTrafficPolicyLocal(t *testing.T) {
	tr := build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", internalLocal)}, twoEndpoints())
	if got := tr.nat(tcp(podOnNode.String(), "10.96.0.20", 80)); !slices.Equal(got, []outcome{{ep1, false}}) {
		t.Errorf("pod -> cluster IP: %v, want only the local endpoint", got)
	}
	remoteOnly := slice("default", "web", "web-1", 8080, readyEP("10.244.2.2", "n2"))
	tr = build(t, testConfig(), []*v1.Service{svc("default", "web", "10.96.0.20", internalLocal)}, remoteOnly)
	if v := tr.filter(chainServices, tcp(podOnNode.String(), "10.96.0.20", 80)); v != "DROP" {
		t.Errorf("verdict %q without local endpoints, want DROP", v)
	}
}

func TestExternalAndLoadBalancerIPs(t *testing.T) {
	s := svc("default", "web", "10.96.0.20", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalIPs = []string{"192.0.2.10"}
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "198.51.100.7"}}
	})
	tr := build(t, testConfig(), []*v1.Service{s}, twoEndpoints())
	for _, dst := range []string{"192.0.2.10", "198.51.100.7"} {
		if got := tr.nat(tcp(outsider.String(), dst, 80)); !slices.Equal(got, []outcome{{ep1, true}, {ep2, true}}) {
			t.Errorf("outsider -> %s:80: %v", dst, got)
		}
	}
}

func TestExemptAddressIsNeverRedirected(t *testing.T) {
	cfg := testConfig()
	cfg.Exempt = []netip.Addr{netip.MustParseAddr("10.96.0.10")}
	dns := svc("kube-system", "kube-dns", "10.96.0.10", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53}}
	})
	tr := build(t, cfg, []*v1.Service{dns}) // no endpoints: would be rejected
	p := pkt{src: podOnNode, dst: netip.MustParseAddr("10.96.0.10"), proto: "udp", dport: 53}
	if got := dnats(tr.nat(p)); !slices.Equal(got, []string{""}) {
		t.Errorf("nat: %v", got)
	}
	if v := tr.filter(chainServices, p); v != "" {
		t.Errorf("verdict %q, want the node to answer", v)
	}
}

func TestBalancingAndAffinityRules(t *testing.T) {
	three := slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"), readyEP("10.244.1.3", "n1"), readyEP("10.244.2.2", "n2"))
	affinity := func(s *v1.Service) { s.Spec.SessionAffinity = v1.ServiceAffinityClientIP }
	ports, _ := Snapshot([]*v1.Service{svc("default", "web", "10.96.0.20", affinity)}, []*discovery.EndpointSlice{three}, "n1", v1.IPv4Protocol)
	rs := Rules(ports, testConfig())
	svcChain := ruleset.ChainName(prefixSVC, ports[0].id())
	var lines []string
	for _, c := range rs.Chains("nat") {
		if c.Name == svcChain {
			lines = c.Lines()
		}
	}
	var probs []string
	rchecks := 0
	for _, l := range lines {
		if i := strings.Index(l, "--probability "); i >= 0 {
			probs = append(probs, strings.Fields(l[i:])[1])
		}
		if strings.Contains(l, "--rcheck --seconds 10800 --reap") {
			rchecks++
		}
	}
	// Each of three endpoints gets a third: 1/3, then 1/2 of the rest,
	// then the remainder.
	if !slices.Equal(probs, []string{"0.3333333333", "0.5000000000"}) {
		t.Errorf("probabilities = %v", probs)
	}
	if rchecks != 3 {
		t.Errorf("%d affinity checks, want one per endpoint before balancing:\n%s", rchecks, strings.Join(lines, "\n"))
	}
	sets := 0
	for _, c := range rs.Chains("nat") {
		for _, l := range c.Lines() {
			if strings.Contains(l, "-m recent --name "+c.Name+" --set --rsource") && strings.Contains(l, "DNAT") {
				sets++
			}
		}
	}
	if sets != 3 {
		t.Errorf("%d endpoint chains record the client, want 3", sets)
	}
}

func TestProtocolsAndChainNames(t *testing.T) {
	s := svc("default", "web", "10.96.0.20", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{{Name: "u", Protocol: v1.ProtocolUDP, Port: 53}, {Name: "s", Protocol: v1.ProtocolSCTP, Port: 53}}
	})
	sl := slice("default", "web", "web-1", 0, readyEP("10.244.1.2", "n1"))
	sl.Ports[0].Name, sl.Ports[0].Protocol, sl.Ports[0].Port = ptrTo("u"), ptrTo(v1.ProtocolUDP), ptrTo[int32](5353)
	sl.Ports = append(sl.Ports, discovery.EndpointPort{Name: ptrTo("s"), Protocol: ptrTo(v1.ProtocolSCTP), Port: ptrTo[int32](5454)})
	tr := build(t, testConfig(), []*v1.Service{s}, sl)
	udp := pkt{src: podOnNode, dst: netip.MustParseAddr("10.96.0.20"), proto: "udp", dport: 53}
	if got := dnats(tr.nat(udp)); !slices.Equal(got, []string{"10.244.1.2:5353"}) {
		t.Errorf("udp: %v", got)
	}
	udp.proto = "sctp"
	if got := dnats(tr.nat(udp)); !slices.Equal(got, []string{"10.244.1.2:5454"}) {
		t.Errorf("sctp: %v", got)
	}
	udp.proto = "tcp"
	if got := dnats(tr.nat(udp)); !slices.Equal(got, []string{""}) {
		t.Errorf("tcp to a udp/sctp service: %v", got)
	}
	for _, table := range tr.rs.Tables() {
		for _, c := range tr.rs.Chains(table) {
			if len(c.Name) > 28 {
				t.Errorf("chain %s is longer than iptables' 28 characters", c.Name)
			}
			if !Owned(c.Name) {
				t.Errorf("chain %s is not recognised as the proxy's: cleanup would leave it", c.Name)
			}
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

func TestLargeClusterRulesHaveNoComments(t *testing.T) {
	cfg := testConfig()
	cfg.NoComments = true
	tr := build(t, cfg, []*v1.Service{svc("default", "web", "10.96.0.20", nodePort(30080))}, twoEndpoints())
	for _, table := range tr.rs.Tables() {
		for _, c := range tr.rs.Chains(table) {
			for _, l := range c.Lines() {
				if strings.Contains(l, "comment") {
					t.Fatalf("rule with a comment: %s", l)
				}
			}
		}
	}
	// Same behaviour without them.
	if got := tr.nat(tcp(outsider.String(), nodeIP.String(), 30080)); !slices.Equal(got, []outcome{{ep1, true}, {ep2, true}}) {
		t.Errorf("outsider -> node port: %v", got)
	}
}
