package servicenet

import (
	"net/netip"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestConfigValidation(t *testing.T) {
	good := Config{NodeName: "n1", ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ClusterDNS: []netip.Addr{netip.MustParseAddr("10.43.0.10")}}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no node name", func(c *Config) { c.NodeName = "" }, "nodeName"},
		{"no cluster CIDR", func(c *Config) { c.ClusterCIDRs = nil }, "--cluster-cidr"},
		{"two IPv4 ranges", func(c *Config) {
			c.ClusterCIDRs = append(c.ClusterCIDRs, netip.MustParsePrefix("10.245.0.0/16"))
		}, "one per family"},
		{"DNS address of a family not served", func(c *Config) {
			c.ClusterDNS = []netip.Addr{netip.MustParseAddr("fd00::10")}
		}, "clusterDNS fd00::10"},
		{"sync periods reversed", func(c *Config) { c.MinSyncPeriod, c.SyncPeriod = 10e9, 1e9 }, "syncPeriod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			c.ApplyDefaults()
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestTrimKeepsWhatComponentsRead(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"},
			Annotations:   map[string]string{"big": strings.Repeat("x", 1000)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: v1.PodSpec{NodeName: "n1", Containers: []v1.Container{
			{Name: "app", Image: "nginx", Env: []v1.EnvVar{{Name: "A", Value: "b"}}, Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 80}}},
			{Name: "sidecar", Image: "envoy"},
		}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "10.244.1.2", PodIPs: []v1.PodIP{{IP: "10.244.1.2"}},
			ContainerStatuses: []v1.ContainerStatus{{Name: "app"}}},
	}
	got, err := trim(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*v1.Pod)
	if p.Labels["app"] != "x" || p.Spec.NodeName != "n1" || p.Status.PodIP != "10.244.1.2" || p.Status.Phase != v1.PodRunning ||
		len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Ports[0].Name != "http" {
		t.Errorf("trimmed pod lost what NetworkPolicies read: %+v", p)
	}
	if p.Annotations != nil || p.ManagedFields != nil || p.Spec.Containers[0].Image != "" || p.Status.ContainerStatuses != nil {
		t.Errorf("trimmed pod keeps what nothing reads: %+v", p)
	}
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: map[string]string{"a": "b"}},
		Spec:   v1.NodeSpec{PodCIDRs: []string{"10.244.2.0/24"}},
		Status: v1.NodeStatus{Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "192.168.5.12"}}, Images: []v1.ContainerImage{{Names: []string{"x"}}}}}
	got, _ = trim(node)
	n := got.(*v1.Node)
	if n.Spec.PodCIDRs[0] != "10.244.2.0/24" || n.Status.Addresses[0].Address != "192.168.5.12" || n.Status.Images != nil {
		t.Errorf("trimmed node: %+v", n)
	}
}
