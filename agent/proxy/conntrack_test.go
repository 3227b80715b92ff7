package proxy

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// The conntrack cleaner looks at the services changed since it last ran:
// a UDP service's first endpoints revive its address, a removed endpoint
// goes stale, and services that did not change cost nothing.
func TestConntrackCleanerFollowsChangedServices(t *testing.T) {
	udp := func(s *v1.Service) { s.Spec.Ports[0].Protocol = v1.ProtocolUDP }
	udpSlice := func(name string, ips ...string) *discovery.EndpointSlice {
		var eps []ep
		for _, ip := range ips {
			eps = append(eps, readyEP(ip, "n1"))
		}
		s := slice("default", name, name+"-1", 8080, eps...)
		s.Ports[0].Protocol = &[]v1.Protocol{v1.ProtocolUDP}[0]
		return s
	}
	var got []*ctFilter
	c := newConntrackCleaner(v1.IPv4Protocol)
	c.delete = func(f netlink.CustomConntrackFilter) (uint, error) {
		got = append(got, f.(*ctFilter))
		return 0, nil
	}
	dns, other := svc("default", "dns", "10.96.0.10", udp), svc("default", "other", "10.96.0.11", udp)
	run := func(slices ...*discovery.EndpointSlice) {
		got = nil
		ports, _ := Snapshot([]*v1.Service{dns, other}, slices, "n1", v1.IPv4Protocol)
		v := viewOf(ports)
		changed := map[string]bool{"default/dns": true}
		c.afterSync(v, changed, slog.Default())
	}
	run(udpSlice("dns", "10.42.0.1", "10.42.0.2"), udpSlice("other", "10.42.0.9"))
	if len(got) != 1 || !got[0].revivedDests[17][netip.MustParseAddrPort("10.96.0.10:80")] || len(got[0].staleEndpoints) != 0 {
		t.Fatalf("first endpoints of dns: filters %+v, want its address revived", got)
	}
	if got[0].revivedDests[17][netip.MustParseAddrPort("10.96.0.11:80")] {
		t.Errorf("other did not change, yet its address was revived")
	}
	run(udpSlice("dns", "10.42.0.1"), udpSlice("other"))
	if len(got) != 1 || !got[0].staleEndpoints[17][netip.MustParseAddrPort("10.42.0.2:8080")] || len(got[0].revivedDests) != 0 {
		t.Fatalf("10.42.0.2 removed from dns: filters %+v, want it stale", got)
	}
	if got[0].staleEndpoints[17][netip.MustParseAddrPort("10.42.0.9:8080")] {
		t.Errorf("other's endpoint went stale although other was not among the changed services")
	}
	if run(udpSlice("dns", "10.42.0.1")); len(got) != 0 {
		t.Errorf("nothing changed in dns, yet entries were deleted: %+v", got)
	}
}
