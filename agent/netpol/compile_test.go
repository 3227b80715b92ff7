package netpol

import (
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	networking "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/agent/internal/ruleset/iptrace"
)

const node = "n1"

func ns(name string, labels map[string]string) *v1.Namespace {
	l := map[string]string{"kubernetes.io/metadata.name": name}
	for k, v := range labels {
		l[k] = v
	}
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func mkpod(namespace, name, ip, nodeName string, labels map[string]string, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec:       v1.PodSpec{NodeName: nodeName, Containers: []v1.Container{{Name: "c", Ports: ports}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning, PodIP: ip, PodIPs: []v1.PodIP{{IP: ip}}},
	}
}

// The cluster of the tests: pods on this node (n1) and another (n2).
var (
	db       = mkpod("default", "db", "10.244.1.10", node, map[string]string{"role": "db"}, v1.ContainerPort{Name: "redis", ContainerPort: 6379})
	frontend = mkpod("default", "frontend", "10.244.1.11", node, map[string]string{"role": "frontend"})
	other    = mkpod("default", "other", "10.244.2.12", "n2", map[string]string{"role": "other"})
	client   = mkpod("default", "client", "10.244.2.33", "n2", map[string]string{"role": "client"})
	proj     = mkpod("myproject", "proj", "10.244.2.20", "n2", map[string]string{"app": "x"})
	alice    = mkpod("alice-ns", "alice", "10.244.2.30", "n2", map[string]string{"role": "client"})
	aliceSrv = mkpod("alice-ns", "alice-server", "10.244.2.31", "n2", map[string]string{"role": "server"})
	bob      = mkpod("bob-ns", "bob", "10.244.2.32", "n2", map[string]string{"role": "client"})
	hostNet  = func() *v1.Pod {
		p := mkpod("default", "hostnet", "192.168.5.11", node, map[string]string{"role": "db"})
		p.Spec.HostNetwork = true
		return p
	}()
	allPods       = []*v1.Pod{db, frontend, other, client, proj, alice, aliceSrv, bob, hostNet}
	allNamespaces = []*v1.Namespace{ns("default", nil), ns("myproject", map[string]string{"project": "myproject"}),
		ns("alice-ns", map[string]string{"user": "alice"}), ns("bob-ns", map[string]string{"user": "bob"})}
)

func ip(p *v1.Pod) netip.Addr { return netip.MustParseAddr(p.Status.PodIP) }

func policy(name string, spec networking.NetworkPolicySpec) *networking.NetworkPolicy {
	return &networking.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: spec}
}

func tcpPort(p int32) networking.NetworkPolicyPort {
	return networking.NetworkPolicyPort{Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(p))}
}

// seedPolicy is the NetworkPolicy resource example of the concepts notes.
func seedPolicy() *networking.NetworkPolicy {
	return policy("test-network-policy", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
		PolicyTypes: []networking.PolicyType{networking.PolicyTypeIngress, networking.PolicyTypeEgress},
		Ingress: []networking.NetworkPolicyIngressRule{{
			From: []networking.NetworkPolicyPeer{
				{IPBlock: &networking.IPBlock{CIDR: "172.17.0.0/16", Except: []string{"172.17.1.0/24"}}},
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"project": "myproject"}}},
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}}},
			},
			Ports: []networking.NetworkPolicyPort{tcpPort(6379)},
		}},
		Egress: []networking.NetworkPolicyEgressRule{{
			To:    []networking.NetworkPolicyPeer{{IPBlock: &networking.IPBlock{CIDR: "10.0.0.0/24"}}},
			Ports: []networking.NetworkPolicyPort{tcpPort(5978)},
		}},
	})
}

type conn struct {
	from, to netip.Addr
	port     int
	proto    string
	allowed  bool
}

func check(t *testing.T, policies []*networking.NetworkPolicy, conns []conn) {
	t.Helper()
	rs, errs := Compile(Input{Policies: policies, Pods: allPods, Namespaces: allNamespaces, NodeName: node},
		Config{Family: v1.IPv4Protocol, AllowMark: 0x10000, Exempt: []netip.Addr{netip.MustParseAddr("10.96.0.10")}})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	// The same connections against the nftables table.
	nt, _ := CompileNFT(Input{Policies: policies, Pods: allPods, Namespaces: allNamespaces, NodeName: node},
		Config{Family: v1.IPv4Protocol, Exempt: []netip.Addr{netip.MustParseAddr("10.96.0.10")}})
	tr := &iptrace.Tracer{T: t, Rules: rs}
	for _, c := range conns {
		proto := c.proto
		if proto == "" {
			proto = "tcp"
		}
		v := iptrace.Verdicts(tr.Trace("filter", chainNetpol, iptrace.Packet{Src: c.from, Dst: c.to, Proto: proto, DPort: c.port}))
		got := !strings.Contains(strings.Join(v, ","), "REJECT")
		if got != c.allowed {
			t.Errorf("iptables: %s -> %s:%d/%s allowed=%v, want %v", c.from, c.to, c.port, proto, got, c.allowed)
		}
		got = nftAllows(t, nt, nftPacket{src: c.from, dst: c.to, proto: proto, dport: c.port})
		if got != c.allowed {
			t.Errorf("nftables: %s -> %s:%d/%s allowed=%v, want %v\n%s", c.from, c.to, c.port, proto, got, c.allowed, nt.Text())
		}
	}
}

var (
	outside   = netip.MustParseAddr("172.17.0.5")
	excepted  = netip.MustParseAddr("172.17.1.5")
	tenNet    = netip.MustParseAddr("10.0.0.5")
	internet  = netip.MustParseAddr("203.0.113.1")
	clusterNS = netip.MustParseAddr("10.96.0.10")
)

func TestSeedNetworkPolicy(t *testing.T) {
	check(t, []*networking.NetworkPolicy{seedPolicy()}, []conn{
		{ip(frontend), ip(db), 6379, "", true},  // podSelector peer
		{ip(frontend), ip(db), 6380, "", false}, // other port
		{ip(frontend), ip(db), 6379, "udp", false},
		{ip(other), ip(db), 6379, "", false}, // same namespace, not selected
		{ip(proj), ip(db), 6379, "", true},   // namespaceSelector peer
		{outside, ip(db), 6379, "", true},    // ipBlock
		{excepted, ip(db), 6379, "", false},  // ipBlock except
		{ip(db), tenNet, 5978, "", true},     // egress rule
		{ip(db), tenNet, 80, "", false},
		{ip(db), ip(frontend), 80, "", false},   // db is isolated for egress
		{ip(db), clusterNS, 53, "udp", true},    // but reaches the node's DNS
		{ip(frontend), ip(other), 80, "", true}, // frontend is not selected
		{internet, ip(frontend), 80, "", true},
	})
}

func TestPeerSelectorsCombinedOrSeparate(t *testing.T) {
	sel := func(m map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: m} }
	target := metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}}
	combined := policy("combined", networking.NetworkPolicySpec{PodSelector: target,
		Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
			{NamespaceSelector: sel(map[string]string{"user": "alice"}), PodSelector: sel(map[string]string{"role": "client"})},
		}}}})
	separate := policy("separate", networking.NetworkPolicySpec{PodSelector: target,
		Ingress: []networking.NetworkPolicyIngressRule{{From: []networking.NetworkPolicyPeer{
			{NamespaceSelector: sel(map[string]string{"user": "alice"})},
			{PodSelector: sel(map[string]string{"role": "client"})},
		}}}})
	// One peer with both selectors: clients in alice's namespaces only.
	check(t, []*networking.NetworkPolicy{combined}, []conn{
		{ip(alice), ip(db), 80, "", true},
		{ip(aliceSrv), ip(db), 80, "", false},
		{ip(bob), ip(db), 80, "", false},
		{ip(client), ip(db), 80, "", false},
	})
	// Two peers: anything in alice's namespaces, or clients of the policy's
	// own namespace.
	check(t, []*networking.NetworkPolicy{separate}, []conn{
		{ip(alice), ip(db), 80, "", true},
		{ip(aliceSrv), ip(db), 80, "", true},
		{ip(bob), ip(db), 80, "", false},
		{ip(client), ip(db), 80, "", true},
	})
}

func TestDefaultPolicies(t *testing.T) {
	all := metav1.LabelSelector{}
	ingressOnly := []networking.PolicyType{networking.PolicyTypeIngress}
	egressOnly := []networking.PolicyType{networking.PolicyTypeEgress}
	both := []networking.PolicyType{networking.PolicyTypeIngress, networking.PolicyTypeEgress}
	denyIngress := policy("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: ingressOnly})
	allowIngress := policy("allow-all", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: ingressOnly,
		Ingress: []networking.NetworkPolicyIngressRule{{}}})
	denyEgress := policy("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: egressOnly})
	allowEgress := policy("allow-all", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: egressOnly,
		Egress: []networking.NetworkPolicyEgressRule{{}}})
	denyBoth := policy("default-deny", networking.NetworkPolicySpec{PodSelector: all, PolicyTypes: both})

	t.Run("default deny all ingress", func(t *testing.T) {
		check(t, []*networking.NetworkPolicy{denyIngress}, []conn{
			{ip(other), ip(db), 80, "", false},
			{internet, ip(frontend), 443, "", false},
			{ip(frontend), ip(db), 80, "", false},
			{ip(db), internet, 443, "", true}, // egress untouched
		})
	})
	t.Run("default allow all ingress", func(t *testing.T) {
		check(t, []*networking.NetworkPolicy{denyIngress, allowIngress}, []conn{
			{ip(other), ip(db), 80, "", true},
			{internet, ip(frontend), 443, "udp", true},
		})
	})
	t.Run("default deny all egress", func(t *testing.T) {
		check(t, []*networking.NetworkPolicy{denyEgress}, []conn{
			{ip(db), internet, 443, "", false},
			{ip(frontend), ip(other), 80, "", false},
			{ip(db), clusterNS, 53, "udp", true}, // the node's DNS stays reachable
			{ip(other), ip(db), 80, "", true},    // ingress untouched
		})
	})
	t.Run("default allow all egress", func(t *testing.T) {
		check(t, []*networking.NetworkPolicy{denyEgress, allowEgress}, []conn{
			{ip(db), internet, 443, "", true},
			{ip(frontend), ip(other), 80, "sctp", true},
		})
	})
	t.Run("default deny all ingress and all egress", func(t *testing.T) {
		check(t, []*networking.NetworkPolicy{denyBoth}, []conn{
			{ip(db), internet, 443, "", false},
			{ip(other), ip(db), 80, "", false},
			{ip(frontend), ip(db), 80, "", false},
		})
	})
}

func TestRepliesOfAllowedConnectionsPass(t *testing.T) {
	rs, _ := Compile(Input{Policies: []*networking.NetworkPolicy{policy("deny", networking.NetworkPolicySpec{
		PolicyTypes: []networking.PolicyType{networking.PolicyTypeIngress, networking.PolicyTypeEgress}})},
		Pods: allPods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol, AllowMark: 0x10000})
	tr := &iptrace.Tracer{T: t, Rules: rs}
	v := iptrace.Verdicts(tr.Trace("filter", chainNetpol, iptrace.Packet{Src: internet, Dst: ip(db), Proto: "tcp", DPort: 40000, State: "ESTABLISHED"}))
	if strings.Contains(strings.Join(v, ","), "REJECT") {
		t.Errorf("an established connection's packet was rejected: %v", v)
	}
	nt, _ := CompileNFT(Input{Policies: []*networking.NetworkPolicy{policy("deny", networking.NetworkPolicySpec{
		PolicyTypes: []networking.PolicyType{networking.PolicyTypeIngress, networking.PolicyTypeEgress}})},
		Pods: allPods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol})
	if !nftAllows(t, nt, nftPacket{src: internet, dst: ip(db), proto: "tcp", dport: 40000, established: true}) {
		t.Errorf("nftables: an established connection's packet was rejected:\n%s", nt.Text())
	}
	if nftAllows(t, nt, nftPacket{src: internet, dst: ip(db), proto: "tcp", dport: 40000}) {
		t.Errorf("nftables: a new connection to an isolated pod was allowed:\n%s", nt.Text())
	}
}

func TestPorts(t *testing.T) {
	named := policy("named", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "db"}},
		Ingress: []networking.NetworkPolicyIngressRule{{Ports: []networking.NetworkPolicyPort{
			{Port: ptr.To(intstr.FromString("redis"))},
			{Protocol: ptr.To(v1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(32000)), EndPort: ptr.To[int32](32010)},
		}}},
	})
	check(t, []*networking.NetworkPolicy{named}, []conn{
		{ip(other), ip(db), 6379, "", true}, // the pod's port named redis
		{ip(other), ip(db), 6380, "", false},
		{ip(other), ip(db), 32005, "udp", true},
		{ip(other), ip(db), 32011, "udp", false},
		{ip(other), ip(db), 32005, "", false},
	})
	egressNamed := policy("egress-named", networking.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "frontend"}},
		PolicyTypes: []networking.PolicyType{networking.PolicyTypeEgress},
		Egress:      []networking.NetworkPolicyEgressRule{{Ports: []networking.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("redis"))}}}},
	})
	check(t, []*networking.NetworkPolicy{egressNamed}, []conn{
		{ip(frontend), ip(db), 6379, "", true}, // db names 6379 redis
		{ip(frontend), ip(other), 6379, "", false},
	})
}

func TestOnlyThisNodesPodsGetChains(t *testing.T) {
	rs, _ := Compile(Input{Policies: []*networking.NetworkPolicy{policy("deny", networking.NetworkPolicySpec{})},
		Pods: allPods, Namespaces: allNamespaces, NodeName: node}, Config{Family: v1.IPv4Protocol, AllowMark: 0x10000})
	var top []string
	for _, c := range rs.Chains("filter") {
		if c.Name == chainNetpol {
			top = c.Lines()
		}
		if len(c.Name) > 28 || !Owned(c.Name) {
			t.Errorf("chain %s: too long or not recognised as the enforcer's", c.Name)
		}
	}
	joined := strings.Join(top, "\n")
	for _, p := range []*v1.Pod{db, frontend} {
		if !strings.Contains(joined, "-d "+p.Status.PodIP+"/32") {
			t.Errorf("local pod %s has no ingress chain:\n%s", p.Name, joined)
		}
	}
	for _, p := range []*v1.Pod{other, hostNet} {
		if strings.Contains(joined, p.Status.PodIP) {
			t.Errorf("pod %s (remote or host network) has a chain here:\n%s", p.Name, joined)
		}
	}
}
