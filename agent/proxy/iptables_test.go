package proxy

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/agent/internal/ruleset"
)

// TestRulesInstallAndCleanUp installs the rules of every kind of service
// with the real iptables (nft-backed on Debian) in a private network
// namespace, changes them partially, and removes them.
func TestRulesInstallAndCleanUp(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	ctx := context.Background()
	ipt, err := ruleset.NewIPTables(ruleset.IPv4)
	if err != nil {
		t.Fatal(err)
	}
	lb := svc("default", "lb", "10.96.0.40", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30081
		s.Spec.ExternalIPs = []string{"192.0.2.10"}
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: "198.51.100.7"}}
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	})
	udp := svc("default", "dns", "10.96.0.53", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{{Protocol: v1.ProtocolUDP, Port: 53}, {Name: "s", Protocol: v1.ProtocolSCTP, Port: 53}}
	})
	services := []*v1.Service{
		svc("default", "web", "10.96.0.20", nodePort(30080), externalLocal),
		svc("default", "local", "10.96.0.21", internalLocal),
		svc("default", "empty", "10.96.0.22", nodePort(30082)),
		lb, udp,
	}
	dnsSlice := slice("default", "dns", "dns-1", 53, readyEP("10.244.1.53", "n1"))
	dnsSlice.Ports = []discovery.EndpointPort{
		{Name: ptrTo(""), Protocol: ptrTo(v1.ProtocolUDP), Port: ptrTo[int32](53)},
		{Name: ptrTo("s"), Protocol: ptrTo(v1.ProtocolSCTP), Port: ptrTo[int32](53)},
	}
	slices := []*discovery.EndpointSlice{
		twoEndpoints(),
		slice("default", "local", "local-1", 8080, readyEP("10.244.2.9", "n2")),
		slice("default", "lb", "lb-1", 8080, readyEP("10.244.1.2", "n1"), readyEP("10.244.2.2", "n2")),
		dnsSlice,
	}
	cfg := testConfig()
	cfg.RandomFully = ipt.HasRandomFully()
	w := ruleset.NewWriter(Owned)
	apply := func(services []*v1.Service, slices []*discovery.EndpointSlice) ruleset.Payload {
		t.Helper()
		ports, _ := Snapshot(services, slices, "n1", v1.IPv4Protocol)
		existing, err := ipt.ExistingChains([]string{"nat", "filter"}, Owned)
		if err != nil {
			t.Fatal(err)
		}
		p := w.Payload(Rules(ports, cfg), existing)
		if err := ipt.Restore(ctx, p.Data); err != nil {
			t.Fatalf("restore: %v\n%s", err, p.Data)
		}
		w.Done(p)
		return p
	}
	full := apply(services, slices)
	if err := ensureJumps(ipt, Jumps()); err != nil {
		t.Fatal(err)
	}
	save := netnstest.Run(t, "iptables-save")
	for _, want := range []string{
		"-A PREROUTING -m comment --comment keelson-service-portals -j KEELSON-SERVICES",
		"-A FORWARD -m comment --comment keelson-forward -j KEELSON-FORWARD",
		`-A KEELSON-SERVICES -d 10.96.0.22/32 -p tcp -m comment --comment "default/empty has no endpoints" -m tcp --dport 80 -j REJECT`,
		"--to-destination 10.244.1.53:53",
	} {
		if !strings.Contains(save, want) {
			t.Errorf("iptables-save lacks %q", want)
		}
	}
	// Jumps are kept in the listed order.
	fwd := netnstest.Run(t, "iptables", "-S", "FORWARD")
	if i, j := strings.Index(fwd, "KEELSON-FORWARD"), strings.Index(fwd, "-j KEELSON-SERVICES"); i < 0 || j < 0 || i > j {
		t.Errorf("FORWARD jumps out of order:\n%s", fwd)
	}

	// One endpoint goes away: only the chains of that service change.
	slices[0] = slice("default", "web", "web-1", 8080, readyEP("10.244.1.2", "n1"))
	p := apply(services, slices)
	if p.Chains == 0 || p.Chains > 5 {
		t.Errorf("an endpoint change wrote %d chains (full sync wrote %d):\n%s", p.Chains, full.Chains, p.Data)
	}
	if save := netnstest.Run(t, "iptables-save"); strings.Contains(save, "10.244.2.2:8080 -") || !strings.Contains(save, "10.244.1.2:8080") {
		t.Errorf("removed endpoint still programmed or remaining one gone:\n%s", save)
	}

	// A new writer (agent restart) finds and replaces what is installed.
	w = ruleset.NewWriter(Owned)
	apply(services[:1], slices[:1])
	if save := netnstest.Run(t, "iptables-save"); strings.Contains(save, "10.96.0.40") {
		t.Errorf("a restarted proxy left a deleted service's rules:\n%s", save)
	}

	if err := Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Fatal(err)
	}
	if save := netnstest.Run(t, "iptables-save"); strings.Contains(save, "KEELSON") {
		t.Errorf("cleanup left rules:\n%s", save)
	}
	// Cleanup is idempotent.
	if err := Cleanup(ctx, []v1.IPFamily{v1.IPv4Protocol}); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}
