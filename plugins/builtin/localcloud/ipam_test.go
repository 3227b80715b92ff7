package localcloud

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func svc(name string, age int, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second))},
		Spec: v1.ServiceSpec{Type: v1.ServiceTypeLoadBalancer, IPFamilies: []v1.IPFamily{v1.IPv4Protocol},
			Ports: []v1.ServicePort{{Port: 80, Protocol: v1.ProtocolTCP}}},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func withStatus(ips ...string) func(*v1.Service) {
	return func(s *v1.Service) {
		for _, ip := range ips {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, v1.LoadBalancerIngress{IP: ip})
		}
	}
}

func withAnnotation(k, v string) func(*v1.Service) {
	return func(s *v1.Service) { s.Annotations = map[string]string{k: v} }
}

func node(name string, isReady bool, labels map[string]string, addrs ...v1.NodeAddress) *v1.Node {
	st := v1.ConditionFalse
	if isReady {
		st = v1.ConditionTrue
	}
	return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: v1.NodeStatus{Addresses: addrs, Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: st}}}}
}

func internal(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip} }
func external(ip string) v1.NodeAddress { return v1.NodeAddress{Type: v1.NodeExternalIP, Address: ip} }

func mustPools(t *testing.T, cfgs ...PoolConfig) []pool {
	t.Helper()
	p, err := parsePools(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// worldOf builds the world the provider would read for svc out of the
// other Services' statuses and the nodes.
func worldOf(pools []pool, nodes []*v1.Node, svcs ...*v1.Service) world {
	w := world{pools: pools, nodes: eligible(nodes), nodeAddrs: map[netip.Addr]bool{}}
	for _, o := range svcs {
		w.others = append(w.others, holder{key: o.Namespace + "/" + o.Name, created: o.CreationTimestamp.Time, addrs: statusAddrs(o), ports: o.Spec.Ports})
	}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				w.nodeAddrs[ip] = true
			}
		}
	}
	return w
}

func TestAssign(t *testing.T) {
	lan := PoolConfig{Name: "lan", Addresses: []string{"192.168.1.240-192.168.1.242"}}
	v6 := PoolConfig{Name: "v6", Addresses: []string{"fd00:1::/126"}}
	edge := PoolConfig{Name: "edge", Addresses: []string{"10.9.0.0/30"}, NodeSelector: map[string]string{"edge": "true"}}
	n1 := node("n1", true, nil, internal("192.168.1.10"))
	n2 := node("n2", true, map[string]string{"edge": "true"}, internal("192.168.1.11"), external("203.0.113.7"))
	down := node("n3", false, nil, internal("192.168.1.12"))
	kubelet := node("n5", true, nil, internal("192.168.1.14"))
	kubelet.Status.DaemonEndpoints.KubeletEndpoint.Port = 10250
	excluded := node("n4", true, map[string]string{v1.LabelNodeExcludeBalancers: ""}, internal("192.168.1.13"))
	cases := []struct {
		name    string
		pools   []PoolConfig
		nodes   []*v1.Node
		others  []*v1.Service
		svc     *v1.Service
		want    string
		wantErr string
	}{
		{name: "first free of the pool", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1}, svc: svc("a", 0), want: "192.168.1.240"},
		{name: "skips what other statuses hold", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("o", 0, withStatus("192.168.1.240"))}, svc: svc("a", 1), want: "192.168.1.241"},
		{name: "pool exhausted", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("o1", 0, withStatus("192.168.1.240")), svc("o2", 0, withStatus("192.168.1.241")), svc("o3", 0, withStatus("192.168.1.242"))},
			svc:    svc("a", 1), wantErr: "no IPv4 address is available"},
		{name: "keeps the address its status holds", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1}, svc: svc("a", 0, withStatus("192.168.1.242")), want: "192.168.1.242"},
		{name: "the older service keeps a contested address", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("old", 0, withStatus("192.168.1.240"))}, svc: svc("new", 5, withStatus("192.168.1.240")), want: "192.168.1.241"},
		{name: "an older service's status does not move for a newer one", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("new", 5, withStatus("192.168.1.240"))}, svc: svc("old", 0, withStatus("192.168.1.240")), want: "192.168.1.240"},
		{name: "annotation asks for an address", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, withAnnotation(AnnotationIPs, "192.168.1.242")), want: "192.168.1.242"},
		{name: "spec.loadBalancerIP asks for an address", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, func(s *v1.Service) { s.Spec.LoadBalancerIP = "192.168.1.241" }), want: "192.168.1.241"},
		{name: "a held address is refused", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("o", 0, withStatus("192.168.1.241"))},
			svc:    svc("a", 1, withAnnotation(AnnotationIPs, "192.168.1.241")), wantErr: "held by Service ns/o"},
		{name: "an address outside the pools is refused", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, withAnnotation(AnnotationIPs, "10.1.1.1")), wantErr: "in no pool"},
		{name: "a bad annotation names it", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, withAnnotation(AnnotationIPs, "x")), wantErr: AnnotationIPs},
		{name: "dual stack takes one of each family", pools: []PoolConfig{lan, v6}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, func(s *v1.Service) { s.Spec.IPFamilies = []v1.IPFamily{v1.IPv6Protocol, v1.IPv4Protocol} }), want: "fd00:1::,192.168.1.240"},
		{name: "RequireDualStack without a v6 pool fails", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1},
			svc: svc("a", 0, func(s *v1.Service) {
				s.Spec.IPFamilies = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
				s.Spec.IPFamilyPolicy = ptr.To(v1.IPFamilyPolicyRequireDualStack)
			}), wantErr: "RequireDualStack"},
		{name: "a pool whose selector no eligible node matches is skipped", pools: []PoolConfig{edge, lan}, nodes: []*v1.Node{n1}, svc: svc("a", 0), want: "192.168.1.240"},
		{name: "a pool without selector needs no node", pools: []PoolConfig{lan}, svc: svc("a", 0), want: "192.168.1.240"},
		{name: "a pool with a selector needs a matching node", pools: []PoolConfig{edge}, nodes: []*v1.Node{n1}, svc: svc("a", 0), wantErr: "no eligible node matches"},
		{name: "a pool whose selector a node matches is used", pools: []PoolConfig{edge, lan}, nodes: []*v1.Node{n1, n2}, svc: svc("a", 0), want: "10.9.0.0"},
		{name: "pool annotation picks the pool", pools: []PoolConfig{edge, lan}, nodes: []*v1.Node{n1, n2}, svc: svc("a", 0, withAnnotation(AnnotationPool, "lan")), want: "192.168.1.240"},
		{name: "unknown pool annotation", pools: []PoolConfig{lan}, nodes: []*v1.Node{n1}, svc: svc("a", 0, withAnnotation(AnnotationPool, "nope")), wantErr: `no pool is named "nope"`},
		{name: "pool never hands out a node address", pools: []PoolConfig{{Name: "p", Addresses: []string{"192.168.1.10-192.168.1.11"}}}, nodes: []*v1.Node{n1}, svc: svc("a", 0), want: "192.168.1.11"},
		{name: "no pool: ready nodes' addresses, ExternalIP first", nodes: []*v1.Node{n1, n2, down, excluded}, svc: svc("a", 0), want: "192.168.1.10,203.0.113.7"},
		{name: "no pool: a port an older service serves is refused", nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("o", 0, withStatus("192.168.1.10"))}, svc: svc("a", 1), wantErr: "port 80/TCP on 192.168.1.10 is already served by Service ns/o"},
		{name: "no pool: another port is fine", nodes: []*v1.Node{n1},
			others: []*v1.Service{svc("o", 0, withStatus("192.168.1.10"))},
			svc:    svc("a", 1, func(s *v1.Service) { s.Spec.Ports[0].Port = 8080 }), want: "192.168.1.10"},
		{name: "no pool: a requested address must be a ready node's", nodes: []*v1.Node{n1, down},
			svc: svc("a", 0, withAnnotation(AnnotationIPs, "192.168.1.12")), wantErr: "not the address of a ready node"},
		{name: "no pool: the kubelet port is refused", nodes: []*v1.Node{kubelet},
			svc: svc("a", 0, func(s *v1.Service) { s.Spec.Ports[0].Port = 10250 }), wantErr: "kubelet API port"},
		{name: "no pool and no ready node", nodes: []*v1.Node{down}, svc: svc("a", 0), wantErr: "no IPv4 address is available"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := worldOf(mustPools(t, tc.pools...), tc.nodes, tc.others...).assign(tc.svc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("assign = %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if strings.Join(s, ",") != tc.want {
				t.Fatalf("assign = %v, want %s", s, tc.want)
			}
		})
	}
}

func TestParsePoolsNamesTheKey(t *testing.T) {
	cases := []struct {
		pools []PoolConfig
		want  string
	}{
		{[]PoolConfig{{Addresses: []string{"10.0.0.0/30"}}}, "pools[0].name"},
		{[]PoolConfig{{Name: "a", Addresses: []string{"10.0.0.1/30"}}}, "pools[0].addresses[0]: \"10.0.0.1/30\" has host bits set; write 10.0.0.0/30"},
		{[]PoolConfig{{Name: "a", Addresses: []string{"10.0.0.9-10.0.0.1"}}}, "pools[0].addresses[0]"},
		{[]PoolConfig{{Name: "a"}}, "pools[0].addresses: pool \"a\" lists no addresses"},
		{[]PoolConfig{{Name: "a", Addresses: []string{"10.0.0.0/30"}}, {Name: "b", Addresses: []string{"10.0.0.2-10.0.0.9"}}}, "pools[1].addresses[0]: \"10.0.0.2-10.0.0.9\" overlaps pool \"a\""},
		{[]PoolConfig{{Name: "a", Addresses: []string{"10.0.0.0/30"}}, {Name: "a", Addresses: []string{"10.1.0.0/30"}}}, "pools[1].name"},
		{[]PoolConfig{{Name: "a", Addresses: []string{"10.0.0.0/30"}, NodeSelector: map[string]string{"bad key": "x"}}}, "pools[0].nodeSelector"},
	}
	for _, tc := range cases {
		_, err := parsePools(tc.pools)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsePools(%+v) = %v, want an error containing %q", tc.pools, err, tc.want)
		}
	}
}

// testProvider is a Provider over listers holding svcs and nodes.
func testProvider(t *testing.T, pools []pool, nodes []*v1.Node, svcs ...*v1.Service) (*Provider, cache.Indexer) {
	t.Helper()
	si := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	ni := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, s := range svcs {
		_ = si.Add(s)
	}
	for _, n := range nodes {
		_ = ni.Add(n)
	}
	return &Provider{services: corelisters.NewServiceLister(si), nodes: corelisters.NewNodeLister(ni), pools: pools,
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), reserved: map[types.UID]holder{}}, si
}

// TestEnsureReservesUntilStatusIsWritten: two Services synced before
// either status is written get different addresses, and an address comes
// free when its Service's load balancer is deleted.
func TestEnsureReservesAndReleases(t *testing.T) {
	ctx := context.Background()
	a, b, c := svc("a", 0), svc("b", 1), svc("c", 2)
	p, si := testProvider(t, mustPools(t, PoolConfig{Name: "p", Addresses: []string{"10.8.0.1-10.8.0.2"}}),
		[]*v1.Node{node("n1", true, nil, internal("192.168.1.10"))}, a, b, c)
	stA, err := p.EnsureLoadBalancer(ctx, "k", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	stB, err := p.EnsureLoadBalancer(ctx, "k", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stA.Ingress[0].IP == stB.Ingress[0].IP || *stA.Ingress[0].IPMode != v1.LoadBalancerIPModeVIP {
		t.Fatalf("a got %v, b got %v: want two different VIPs", stA.Ingress, stB.Ingress)
	}
	if _, err := p.EnsureLoadBalancer(ctx, "k", c, nil); err == nil {
		t.Fatal("a third service got an address from a pool of two")
	}
	// a is deleted: its cleanup releases the reservation, and its status
	// goes with it.
	if err := p.EnsureLoadBalancerDeleted(ctx, "k", a); err != nil {
		t.Fatal(err)
	}
	_ = si.Delete(a)
	stC, err := p.EnsureLoadBalancer(ctx, "k", c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stC.Ingress[0].IP != stA.Ingress[0].IP {
		t.Fatalf("c got %s, want a's released %s", stC.Ingress[0].IP, stA.Ingress[0].IP)
	}
}

// TestNewLeaderContinuesFromStatus: a fresh provider (a new leader's
// plugin, nothing in memory) keeps every Service's address and gives a new
// Service a free one.
func TestNewLeaderContinuesFromStatus(t *testing.T) {
	ctx := context.Background()
	a, b := svc("a", 0, withStatus("10.8.0.2")), svc("b", 1)
	p, _ := testProvider(t, mustPools(t, PoolConfig{Name: "p", Addresses: []string{"10.8.0.1-10.8.0.3"}}),
		[]*v1.Node{node("n1", true, nil, internal("192.168.1.10"))}, a, b)
	stB, err := p.EnsureLoadBalancer(ctx, "k", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	stA, err := p.EnsureLoadBalancer(ctx, "k", a, nil)
	if err != nil {
		t.Fatal(err)
	}
	if stA.Ingress[0].IP != "10.8.0.2" || stB.Ingress[0].IP != "10.8.0.1" {
		t.Fatalf("a %s, b %s; want a to keep 10.8.0.2 and b to get 10.8.0.1", stA.Ingress[0].IP, stB.Ingress[0].IP)
	}
	_, exists, _ := p.GetLoadBalancer(ctx, "k", a)
	if !exists {
		t.Error("GetLoadBalancer: a Service with a status has a load balancer")
	}
}

func TestInstanceMetadataFromNode(t *testing.T) {
	n := node("n1", true, map[string]string{v1.LabelTopologyZone: "z1", v1.LabelTopologyRegion: "r1"}, internal("192.168.1.10"), external("203.0.113.7"))
	p, _ := testProvider(t, nil, nil)
	md, err := p.InstanceMetadata(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if md.ProviderID != "local://n1" || md.Zone != "z1" || md.Region != "r1" || !slices.Equal(md.NodeAddresses, n.Status.Addresses) {
		t.Fatalf("metadata %+v", md)
	}
}
