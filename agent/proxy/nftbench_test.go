package proxy

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// benchCluster is n ClusterIP services with 5 endpoints each.
func benchCluster(n int) ([]*v1.Service, []*discovery.EndpointSlice) {
	var svcs []*v1.Service
	var sl []*discovery.EndpointSlice
	for i := range n {
		name := fmt.Sprintf("s%d", i)
		svcs = append(svcs, svc("b", name, fmt.Sprintf("10.96.%d.%d", i/256, i%256)))
		var eps []ep
		for j := range 5 {
			k := i*8 + j
			eps = append(eps, readyEP(fmt.Sprintf("10.%d.%d.%d", 128+k/65536, (k/256)%256, k%256), "n1"))
		}
		sl = append(sl, slice("b", name, name+"-1", 8080, eps...))
	}
	return svcs, sl
}

func benchPorts(n int) []ServicePort {
	svcs, sl := benchCluster(n)
	ports, _ := Snapshot(svcs, sl, "n1", v1.IPv4Protocol)
	return ports
}

// BenchmarkNFTRulesAndDiff is the Go side of one full nftables sync of
// 10,000 services: the whole table computed and compared with the
// previous one.
func BenchmarkNFTRulesAndDiff(b *testing.B) {
	ports := benchPorts(10000)
	prev, err := NFTRules(ports, testConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		cur, _ := NFTRules(ports, testConfig())
		NFTDiff(prev, cur, NFTObjects{})
	}
}

// BenchmarkNFTEndpointChange is the Go side of the sync after one
// endpoint of one of 10,000 services changed: the tracker hands over the
// one changed service, whose ports alone are recomputed, regenerated and
// diffed.
func BenchmarkNFTEndpointChange(b *testing.B) {
	svcs, sl := benchCluster(10000)
	tr := newChangeTracker()
	h := tr.handler(func() {})
	for _, s := range svcs {
		h.OnAdd(s, true)
	}
	for _, s := range sl {
		h.OnAdd(s, true)
	}
	v := &portView{bySvc: map[string][]ServicePort{}}
	v.update(tr.take(), "n1", v1.IPv4Protocol)
	claims, installed := nftClaims{}, newNFTInstalled()
	mustPlan(b, installed, claims, v).commit(installed, claims)
	b.ResetTimer()
	for i := range b.N {
		s := sl[(i*7919)%len(sl)].DeepCopy()
		s.Endpoints[0].Addresses = []string{fmt.Sprintf("10.200.%d.%d", (i/256)%256, i%256)}
		h.OnUpdate(sl[(i*7919)%len(sl)], s)
		v.update(tr.take(), "n1", v1.IPv4Protocol)
		p := mustPlan(b, installed, claims, v)
		if p.batch.Chains != 0 || p.batch.Elements != 4 {
			b.Fatalf("an endpoint change wrote %d chains and %d elements, want none and 4 (an endpoints-map and a hairpin element deleted and added)", p.batch.Chains, p.batch.Elements)
		}
		p.commit(installed, claims)
	}
}
