package proxy

import (
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// benchPorts are n ClusterIP services with 5 endpoints each.
func benchPorts(b *testing.B, n int) []ServicePort {
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
	ports, _ := Snapshot(svcs, sl, "n1", v1.IPv4Protocol)
	return ports
}

// BenchmarkNFTRulesAndDiff is the Go side of one nftables sync of 10,000
// services: the table computed and compared with the previous one.
func BenchmarkNFTRulesAndDiff(b *testing.B) {
	ports := benchPorts(b, 10000)
	prev := NFTRules(ports, testConfig())
	b.ResetTimer()
	for range b.N {
		cur := NFTRules(ports, testConfig())
		NFTDiff(prev, cur, NFTObjects{})
	}
}
