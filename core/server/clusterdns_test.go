package server

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestEnsureClusterDNSService(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	if err := ensureClusterDNSService(ctx, c, "10.43.0.10"); err != nil {
		t.Fatal(err)
	}
	svc, err := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP != "10.43.0.10" || len(svc.Spec.Selector) != 0 || len(svc.Spec.Ports) != 2 {
		t.Fatalf("kube-dns = %+v, want 10.43.0.10 without selector, dns and dns-tcp ports", svc.Spec)
	}
	// An operator's own kube-dns is left alone, and a second call is a no-op.
	svc.Spec.Selector = map[string]string{"k8s-app": "coredns"}
	if _, err := c.CoreV1().Services("kube-system").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := ensureClusterDNSService(ctx, c, "10.43.0.10"); err != nil {
		t.Fatal(err)
	}
	got, _ := c.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
	if got.Spec.Selector["k8s-app"] != "coredns" {
		t.Fatalf("existing kube-dns changed: %+v", got.Spec)
	}
}
