package cloud

import (
	"context"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/plugins/builtin/localcloud"
)

// poolIP is the one address of the test's pool (TEST-NET-2, on no
// interface: this test reads statuses only).
const poolIP = "198.51.100.10"

// TestLoadBalancerPool: with a pool of one address, the first Service gets
// it, the second waits (no address is ever held twice), a Service of
// another loadBalancerClass is left alone, and the address passes on when
// its holder is deleted, then when the next holder stops being a
// LoadBalancer.
func TestLoadBalancerPool(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{Plugins: []string{localcloud.Name},
		Args: []string{"--load-balancer-pool", "lan=" + poolIP + "/32"}})
	c := s.Clientset(t)
	ns := "default"
	createService(t, c, ns, lbService("other", func(s *v1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other") }))
	createService(t, c, ns, lbService("first"))
	waitIngress(t, c, ns, "first", poolIP)

	createService(t, c, ns, lbService("second"))
	waitEvent(t, c, ns, "second", "no IPv4 address is available")

	deleteService(t, c, ns, "first")
	waitIngress(t, c, ns, "second", poolIP)

	// A Service asking for the held address waits for it.
	createService(t, c, ns, lbService("wants", func(s *v1.Service) {
		s.Annotations = map[string]string{localcloud.AnnotationIPs: poolIP}
	}))
	waitEvent(t, c, ns, "wants", "held by Service default/second")
	patch := []byte(`{"spec":{"type":"ClusterIP"}}`)
	if _, err := c.CoreV1().Services(ns).Patch(context.Background(), "second", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, c, ns, "wants", poolIP)
	second, err := c.CoreV1().Services(ns).Get(context.Background(), "second", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Status.LoadBalancer.Ingress) > 0 || len(second.Finalizers) > 0 {
		t.Errorf("service second, now ClusterIP, keeps status %+v finalizers %v", second.Status.LoadBalancer, second.Finalizers)
	}
	requirePending(t, c, ns, "other")
}
