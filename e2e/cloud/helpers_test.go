package cloud

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
)

// waitTimeout bounds every wait; a hang guard on a shared machine, not a
// timing claim.
const waitTimeout = 3 * time.Minute

// cleanupFinalizer is the service controller's finalizer.
const cleanupFinalizer = "service.kubernetes.io/load-balancer-cleanup"

// lbService is a LoadBalancer Service of port 80 selecting app=web.
func lbService(name string, mutate ...func(*v1.Service)) *v1.Service {
	s := &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.ServiceSpec{
		Type:     v1.ServiceTypeLoadBalancer,
		Selector: map[string]string{"app": "web"},
		Ports:    []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80), Protocol: v1.ProtocolTCP}},
	}}
	for _, m := range mutate {
		m(s)
	}
	return s
}

func createService(t testing.TB, c kubernetes.Interface, ns string, s *v1.Service) {
	t.Helper()
	if _, err := c.CoreV1().Services(ns).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating service %s: %v", s.Name, err)
	}
}

// ingressIPs are the Service's load-balancer addresses, sorted.
func ingressIPs(s *v1.Service) []string {
	var out []string
	for _, i := range s.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	slices.Sort(out)
	return out
}

// waitIngress waits until the Service's status lists exactly want (sorted)
// as VIPs, and returns the Service.
func waitIngress(t testing.TB, c kubernetes.Interface, ns, name string, want ...string) *v1.Service {
	t.Helper()
	slices.Sort(want)
	var svc *v1.Service
	harness.Eventually(t, waitTimeout, fmt.Sprintf("service %s gets %v", name, want), func() (bool, string) {
		var err error
		svc, err = c.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return slices.Equal(ingressIPs(svc), want), fmt.Sprintf("status %+v; events: %s", svc.Status.LoadBalancer, events(c, ns, name))
	})
	for _, i := range svc.Status.LoadBalancer.Ingress {
		if i.IPMode == nil || *i.IPMode != v1.LoadBalancerIPModeVIP {
			t.Errorf("service %s: ingress %s has ipMode %v, want VIP", name, i.IP, i.IPMode)
		}
	}
	if !slices.Contains(svc.Finalizers, cleanupFinalizer) {
		t.Errorf("service %s has finalizers %v, want %s", name, svc.Finalizers, cleanupFinalizer)
	}
	return svc
}

// waitEvent waits for an Event of the Service whose message contains want.
func waitEvent(t testing.TB, c kubernetes.Interface, ns, name, want string) {
	t.Helper()
	harness.Eventually(t, waitTimeout, fmt.Sprintf("an event of service %s saying %q", name, want), func() (bool, string) {
		ev := events(c, ns, name)
		return strings.Contains(ev, want), ev
	})
}

// events lists the Service's events, one "reason: message" a line.
func events(c kubernetes.Interface, ns, name string) string {
	list, err := c.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		fmt.Fprintf(&b, "%s: %s\n", e.Reason, e.Message)
	}
	return b.String()
}

// deleteService deletes it and waits until it is gone (its finalizer
// removed by the service controller).
func deleteService(t testing.TB, c kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx := context.Background()
	if err := c.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting service %s: %v", name, err)
	}
	harness.Eventually(t, waitTimeout, "service "+name+" is gone", func() (bool, string) {
		s, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, ""
		}
		if err != nil {
			return false, err.Error()
		}
		return false, fmt.Sprintf("finalizers %v", s.Finalizers)
	})
}

// requirePending fails unless the Service has no load-balancer status and
// no cleanup finalizer: no controller took it.
func requirePending(t testing.TB, c kubernetes.Interface, ns, name string) {
	t.Helper()
	s, err := c.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Status.LoadBalancer.Ingress) > 0 || slices.Contains(s.Finalizers, cleanupFinalizer) {
		t.Errorf("service %s of another loadBalancerClass was taken: status %+v finalizers %v", name, s.Status.LoadBalancer, s.Finalizers)
	}
}
