package svcenv

import (
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(ns, name, ip string, ports ...v1.ServicePort) *v1.Service {
	return &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func names(vars []Var) []string {
	var out []string
	for _, v := range vars {
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}

func TestSeedMyNginx(t *testing.T) {
	// The concepts notes' printenv after the pods restart.
	services := []*v1.Service{
		svc("default", "kubernetes", "10.96.0.1", v1.ServicePort{Name: "https", Protocol: v1.ProtocolTCP, Port: 443}),
		svc("default", "my-nginx", "10.96.104.176", v1.ServicePort{Protocol: v1.ProtocolTCP, Port: 80}),
	}
	got := names(FromServices("default", services, nil))
	want := []string{
		"KUBERNETES_PORT=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
		"KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
		"KUBERNETES_PORT_443_TCP_PORT=443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp",
		"KUBERNETES_SERVICE_HOST=10.96.0.1",
		"KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_SERVICE_PORT_HTTPS=443",
		"MY_NGINX_PORT=tcp://10.96.104.176:80",
		"MY_NGINX_PORT_80_TCP=tcp://10.96.104.176:80",
		"MY_NGINX_PORT_80_TCP_ADDR=10.96.104.176",
		"MY_NGINX_PORT_80_TCP_PORT=80",
		"MY_NGINX_PORT_80_TCP_PROTO=tcp",
		"MY_NGINX_SERVICE_HOST=10.96.104.176",
		"MY_NGINX_SERVICE_PORT=80",
	}
	if !slices.Equal(got, want) {
		t.Errorf("vars:\n%v\nwant:\n%v", got, want)
	}
}

func TestWhichServicesCount(t *testing.T) {
	master := svc("default", "kubernetes", "10.96.0.1", v1.ServicePort{Name: "https", Port: 443})
	shadow := svc("shop", "kubernetes", "10.96.0.99", v1.ServicePort{Port: 8443})
	services := []*v1.Service{
		master, shadow,
		svc("shop", "cart", "10.96.0.5", v1.ServicePort{Name: "http", Port: 80}, v1.ServicePort{Name: "dns-udp", Protocol: v1.ProtocolUDP, Port: 53}),
		svc("shop", "headless", v1.ClusterIPNone, v1.ServicePort{Port: 80}),
		svc("other", "elsewhere", "10.96.0.6", v1.ServicePort{Port: 80}),
		svc("shop", "v6", "fd00::6", v1.ServicePort{Port: 80}),
	}
	has := func(vars []Var, name, value string) bool {
		return slices.Contains(names(vars), name+"="+value)
	}
	vars := FromServices("shop", services, nil)
	for _, c := range [][2]string{
		{"KUBERNETES_SERVICE_HOST", "10.96.0.99"}, // the namespace's own service wins
		{"CART_SERVICE_PORT", "80"},
		{"CART_SERVICE_PORT_DNS_UDP", "53"},
		{"CART_PORT_53_UDP", "udp://10.96.0.5:53"},
		{"V6_PORT", "tcp://[fd00::6]:80"},
	} {
		if !has(vars, c[0], c[1]) {
			t.Errorf("missing %s=%s in %v", c[0], c[1], names(vars))
		}
	}
	for _, v := range vars {
		if v.Name == "HEADLESS_SERVICE_HOST" || v.Name == "ELSEWHERE_SERVICE_HOST" {
			t.Errorf("unexpected %s", v.Name)
		}
	}
	// Service links off: only the master service.
	off := FromServices("shop", []*v1.Service{master, services[2]}, ptr.To(false))
	if !has(off, "KUBERNETES_SERVICE_HOST", "10.96.0.1") || has(off, "CART_SERVICE_PORT", "80") {
		t.Errorf("enableServiceLinks=false: %v", names(off))
	}
}
