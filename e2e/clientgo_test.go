package e2e

import (
	"context"
	"github.com/keelson/keelson/e2e/harness"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// serviceCIDR is the server's default --service-cidr.
const serviceCIDR = "10.43.0.0/16"

func inServiceCIDR(ip string) bool {
	addr, err := netip.ParseAddr(strings.TrimSpace(ip))
	return err == nil && netip.MustParsePrefix(serviceCIDR).Contains(addr)
}

// clientNamespace creates (once) the namespace the client-go subtests share.
func clientNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	const ns = "client"
	_, err := cs.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating namespace %s: %v", ns, err)
	}
	return ns
}

func service(name, clusterIP string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: clusterIP,
			Selector:  map[string]string{"app": name},
			Ports:     []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

func testServiceClusterIP(t *testing.T, s *harness.Server) {
	ctx := context.Background()
	cs := s.Clientset(t)
	ns := clientNamespace(t, cs)
	svcs := cs.CoreV1().Services(ns)

	got, err := svcs.Create(ctx, service("allocated", ""), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a service: %v", err)
	}
	if !inServiceCIDR(got.Spec.ClusterIP) {
		t.Errorf("allocated cluster IP %q is not in %s", got.Spec.ClusterIP, serviceCIDR)
	}
	// Asking for the IP just allocated to another service is refused.
	if _, err := svcs.Create(ctx, service("taken", got.Spec.ClusterIP), metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("service asking for the allocated IP %s: %v, want 422 Invalid", got.Spec.ClusterIP, err)
	}
	for _, ip := range []string{"10.99.0.1", "abc"} {
		_, err := svcs.Create(ctx, service("bad-ip", ip), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("service with spec.clusterIP %q: %v, want 422 Invalid", ip, err)
		}
	}
}

func testInvalidNames(t *testing.T, s *harness.Server) {
	ctx := context.Background()
	cs := s.Clientset(t)
	ns := clientNamespace(t, cs)
	for _, name := range []string{"UpperCase", strings.Repeat("a", 254)} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}
		_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) {
			t.Errorf("config map named %.20q... (%d characters): %v, want 422 Invalid", name, len(name), err)
		}
	}
	// The longest valid name is accepted.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: strings.Repeat("a", 253)}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Errorf("config map with a 253-character name: %v", err)
	}
}

func testConflict(t *testing.T, s *harness.Server) {
	ctx := context.Background()
	cs := s.Clientset(t)
	ns := clientNamespace(t, cs)
	cms := cs.CoreV1().ConfigMaps(ns)
	stale, err := cms.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "conflict"},
		Data:       map[string]string{"v": "1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh := stale.DeepCopy()
	fresh.Data["v"] = "2"
	updated, err := cms.Update(ctx, fresh, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("first update: %v", err)
	}
	if updated.ResourceVersion == stale.ResourceVersion {
		t.Errorf("update kept resourceVersion %s", stale.ResourceVersion)
	}
	stale.Data["v"] = "3"
	if _, err := cms.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("update with stale resourceVersion %s: %v, want 409 Conflict", stale.ResourceVersion, err)
	}
	got, err := cms.Get(ctx, "conflict", metav1.GetOptions{})
	if err != nil || got.Data["v"] != "2" || got.ResourceVersion != updated.ResourceVersion {
		t.Errorf("after the refused update: %v (rv %s), err %v; want v=2 at rv %s", got.Data, got.ResourceVersion, err, updated.ResourceVersion)
	}
	// Deleting with a stale precondition conflicts too.
	err = cms.Delete(ctx, "conflict", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &stale.ResourceVersion}})
	if !apierrors.IsConflict(err) {
		t.Errorf("delete with stale resourceVersion precondition: %v, want 409 Conflict", err)
	}
}

// waitFor polls cond every second until it returns true or timeout passes;
// it reports whether cond became true.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Second)
	}
}
