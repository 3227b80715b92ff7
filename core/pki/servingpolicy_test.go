package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"net/url"
	"strings"
	"testing"
)

func servingRequest(t *testing.T, dns []string, ips ...string) *NodeRequest {
	t.Helper()
	r := &NodeRequest{Name: "w1", Serving: &x509.CertificateRequest{DNSNames: dns}}
	for _, ip := range ips {
		r.Serving.IPAddresses = append(r.Serving.IPAddresses, net.ParseIP(ip))
	}
	return r
}

func TestServingPolicy(t *testing.T) {
	_, svc, _ := net.ParseCIDR("10.43.0.0/16")
	agent := ServingPolicy{NodeName: "w1", DeniedNets: []*net.IPNet{svc}, DeniedIPs: []net.IP{net.ParseIP("10.0.0.1")}}
	server := ServingPolicy{NodeName: "w1", AllowLoopback: true, DeniedNets: []*net.IPNet{svc}}
	for _, tc := range []struct {
		name   string
		policy ServingPolicy
		req    *NodeRequest
		want   string // "" allowed
	}{
		{"own name and address", agent, servingRequest(t, []string{"w1"}, "10.0.0.7"), ""},
		{"name case-insensitive", agent, servingRequest(t, []string{"W1"}, "10.0.0.7"), ""},
		{"another name", agent, servingRequest(t, []string{"w1", "w2"}, "10.0.0.7"), `"w2"`},
		{"kubernetes", agent, servingRequest(t, []string{"kubernetes"}, "10.0.0.7"), `"kubernetes"`},
		{"loopback v4", agent, servingRequest(t, []string{"w1"}, "127.0.0.1"), "loopback"},
		{"loopback v6", agent, servingRequest(t, []string{"w1"}, "::1"), "loopback"},
		{"unspecified", agent, servingRequest(t, []string{"w1"}, "0.0.0.0"), "not a node address"},
		{"link-local", agent, servingRequest(t, []string{"w1"}, "169.254.169.254"), "not a node address"},
		{"service range", agent, servingRequest(t, []string{"w1"}, "10.43.0.1"), "service range"},
		{"server address", agent, servingRequest(t, []string{"w1"}, "10.0.0.1"), "server or another node"},
		{"server token: loopback", server, servingRequest(t, []string{"w1"}, "127.0.0.1"), ""},
		{"server token: service range", server, servingRequest(t, []string{"w1"}, "10.43.0.1"), "service range"},
		{"server token: another name", server, servingRequest(t, []string{"localhost"}, "127.0.0.1"), `"localhost"`},
		{"reserved node name", ServingPolicy{NodeName: "kubernetes.default.svc"}, servingRequest(t, []string{"kubernetes.default.svc"}, "10.0.0.7"), "reserved"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.policy.Check(tc.req)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("%v, want allowed", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("%v, want an error containing %q", err, tc.want)
			}
		})
	}
	withURI := servingRequest(t, []string{"w1"}, "10.0.0.7")
	withURI.Serving.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster", Path: "/ns/kube-system"}}
	if err := agent.Check(withURI); err == nil {
		t.Error("a URI SAN was allowed")
	}
}

func TestKeyHashIdentifiesTheClientKey(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	h := func(k *ecdsa.PrivateKey) string {
		r := &NodeRequest{Client: &x509.CertificateRequest{PublicKey: &k.PublicKey}}
		s, err := r.KeyHash()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first, again := h(k1), h(k1)
	if first != again || first == h(k2) || len(first) != 64 {
		t.Errorf("KeyHash: %s %s", h(k1), h(k2))
	}
}
