package proxy

import (
	"net/netip"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/utils/ptr"
)

func addrs(eps []Endpoint) []string {
	var out []string
	for _, e := range eps {
		out = append(out, e.Addr.String())
	}
	return out
}

func TestSnapshotEndpointSelection(t *testing.T) {
	f, tr := ptr.To(false), ptr.To(true)
	tests := []struct {
		name           string
		eps            []ep
		cluster, local []string
	}{
		{"ready endpoints serve; nil conditions mean ready",
			[]ep{readyEP("10.244.1.2", "n1"), readyEP("10.244.2.2", "n2")},
			[]string{"10.244.1.2:8080", "10.244.2.2:8080"}, []string{"10.244.1.2:8080"}},
		{"not-ready endpoints do not serve",
			[]ep{readyEP("10.244.1.2", "n1"), {ip: "10.244.2.2", node: "n2", ready: f, serving: f}},
			[]string{"10.244.1.2:8080"}, []string{"10.244.1.2:8080"}},
		{"terminating but serving endpoints serve only when nothing is ready",
			[]ep{{ip: "10.244.1.2", node: "n1", ready: f, serving: tr, terminating: tr}, readyEP("10.244.2.2", "n2")},
			[]string{"10.244.2.2:8080"}, []string{"10.244.1.2:8080"}},
		{"terminating and not serving never serve",
			[]ep{{ip: "10.244.1.2", node: "n1", ready: f, serving: f, terminating: tr}},
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ports, problems := Snapshot([]*v1.Service{svc("default", "web", "10.96.0.20")},
				[]*discovery.EndpointSlice{slice("default", "web", "web-1", 8080, tt.eps...)}, "n1", v1.IPv4Protocol)
			if len(problems) > 0 || len(ports) != 1 {
				t.Fatalf("ports %v problems %v", ports, problems)
			}
			if got := addrs(ports[0].ClusterEndpoints()); !slices.Equal(got, tt.cluster) {
				t.Errorf("cluster endpoints = %v, want %v", got, tt.cluster)
			}
			if got := addrs(ports[0].LocalEndpoints()); !slices.Equal(got, tt.local) {
				t.Errorf("local endpoints = %v, want %v", got, tt.local)
			}
		})
	}
}

func TestSnapshotPortsAndServices(t *testing.T) {
	multi := svc("shop", "api", "10.96.0.30", func(s *v1.Service) {
		s.Spec.Ports = []v1.ServicePort{
			{Name: "http", Protocol: v1.ProtocolTCP, Port: 80},
			{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53},
			{Name: "sig", Protocol: v1.ProtocolSCTP, Port: 9999},
		}
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	})
	// Two slices; named target ports resolved per pod by the controller.
	s1 := slice("shop", "api", "api-a", 0, readyEP("10.244.1.5", "n1"))
	s1.Ports = []discovery.EndpointPort{
		{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8080)},
		{Name: ptr.To("dns"), Protocol: ptr.To(v1.ProtocolUDP), Port: ptr.To[int32](5353)},
		{Name: ptr.To("sig"), Protocol: ptr.To(v1.ProtocolSCTP), Port: ptr.To[int32](9998)},
	}
	s2 := slice("shop", "api", "api-b", 0, readyEP("10.244.2.5", "n2"), readyEP("10.244.1.5", "n1"))
	s2.Ports = []discovery.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To[int32](8081)}}
	v6 := slice("shop", "api", "api-v6", 0, readyEP("fd00::5", "n1"))
	v6.AddressType = discovery.AddressTypeIPv6
	v6.Ports = s1.Ports
	headless := svc("shop", "db", v1.ClusterIPNone)
	external := svc("shop", "ext", "", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeExternalName
		s.Spec.ClusterIP = ""
		s.Spec.ClusterIPs = nil
	})
	lb := svc("shop", "lb", "10.96.0.40", func(s *v1.Service) {
		s.Spec.Type = v1.ServiceTypeLoadBalancer
		s.Spec.Ports[0].NodePort = 30080
		s.Spec.ExternalIPs = []string{"192.0.2.10", "2001:db8::10", "bogus"}
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{
			{IP: "198.51.100.7"}, {IP: "198.51.100.8", IPMode: ptr.To(v1.LoadBalancerIPModeProxy)}, {Hostname: "lb.example"},
		}
		s.Spec.SessionAffinityConfig = &v1.SessionAffinityConfig{ClientIP: &v1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
		s.Spec.SessionAffinity = v1.ServiceAffinityClientIP
	})
	ports, problems := Snapshot([]*v1.Service{multi, headless, external, lb}, []*discovery.EndpointSlice{s1, s2, v6}, "n1", v1.IPv4Protocol)
	if len(problems) != 1 {
		t.Errorf("problems = %v, want one for the bogus external IP", problems)
	}
	var names []string
	for _, p := range ports {
		names = append(names, p.String()+"/"+string(p.Protocol))
	}
	want := []string{"shop/api:dns/UDP", "shop/api:http/TCP", "shop/api:sig/SCTP", "shop/lb/TCP"}
	if !slices.Equal(names, want) {
		t.Fatalf("ports = %v, want %v (headless and ExternalName services have no rules)", names, want)
	}
	http, dns, sig, lbp := ports[1], ports[0], ports[2], ports[3]
	if got := addrs(http.Endpoints); !slices.Equal(got, []string{"10.244.1.5:8080", "10.244.1.5:8081", "10.244.2.5:8081"}) {
		t.Errorf("http endpoints = %v", got)
	}
	if got := addrs(dns.Endpoints); !slices.Equal(got, []string{"10.244.1.5:5353"}) {
		t.Errorf("dns endpoints = %v (IPv6 slice must be ignored)", got)
	}
	if got := addrs(sig.Endpoints); !slices.Equal(got, []string{"10.244.1.5:9998"}) {
		t.Errorf("sctp endpoints = %v", got)
	}
	if http.AffinitySeconds != 10800 || lbp.AffinitySeconds != 60 {
		t.Errorf("affinity = %d, %d; want the default 10800 and the configured 60", http.AffinitySeconds, lbp.AffinitySeconds)
	}
	if lbp.NodePort != 30080 || !slices.Equal(lbp.ExternalIPs, []netip.Addr{netip.MustParseAddr("192.0.2.10")}) ||
		!slices.Equal(lbp.LoadBalancerIPs, []netip.Addr{netip.MustParseAddr("198.51.100.7")}) {
		t.Errorf("lb = nodePort %d externalIPs %v lbIPs %v (IPv4 only; Proxy-mode ingress skipped)", lbp.NodePort, lbp.ExternalIPs, lbp.LoadBalancerIPs)
	}

	ports6, _ := Snapshot([]*v1.Service{multi}, []*discovery.EndpointSlice{s1, v6}, "n1", v1.IPv6Protocol)
	if len(ports6) != 0 {
		t.Errorf("IPv6 ports of a single-stack IPv4 service = %v, want none", ports6)
	}
}
