package servicecidr

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keelson/keelson/plugins/sdk"
)

var now = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func cidr(name string, deleting bool, ranges ...string) *networkingv1.ServiceCIDR {
	c := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name, Finalizers: []string{Finalizer}},
		Spec: networkingv1.ServiceCIDRSpec{CIDRs: ranges}}
	if deleting {
		t := metav1.NewTime(now.Add(-time.Second))
		c.DeletionTimestamp = &t
	}
	return c
}

func ip(addr string, managed bool) *networkingv1.IPAddress {
	a := &networkingv1.IPAddress{ObjectMeta: metav1.ObjectMeta{Name: addr, Labels: map[string]string{}}}
	if managed {
		a.Labels[networkingv1.LabelManagedBy] = allocatorName
	}
	return a
}

func TestReconcile(t *testing.T) {
	tests := []struct {
		name          string
		objs          []runtime.Object
		target        string
		wantFinalizer bool
		wantReady     metav1.ConditionStatus
		wantRequeue   bool
	}{
		{"new one gets the finalizer and Ready", []runtime.Object{
			&networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.50.0.0/24"}}},
		}, "extra", true, metav1.ConditionTrue, false},
		{"deleting with an address only it holds is blocked", []runtime.Object{
			cidr("extra", true, "10.50.0.0/24"), ip("10.50.0.7", true),
		}, "extra", true, metav1.ConditionFalse, false},
		{"an address of someone else's does not block", []runtime.Object{
			cidr("extra", true, "10.50.0.0/24"), ip("10.50.0.7", false),
		}, "extra", true, "", true},
		{"covered by a larger one: released after the grace period", []runtime.Object{
			cidr("extra", true, "10.50.0.0/24"), cidr("big", false, "10.50.0.0/16"), ip("10.50.0.7", true),
		}, "extra", true, "", true},
		{"address also in another range: released after the grace period", []runtime.Object{
			cidr("extra", true, "10.50.0.0/24", "fd00::/120"), cidr("v4", false, "10.50.0.0/20"), ip("10.50.0.7", true),
		}, "extra", true, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, client := newController(t, tc.objs...)
			res, err := c.reconcile(context.Background(), tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if (res.RequeueAfter > 0) != tc.wantRequeue {
				t.Errorf("requeue after %s, want requeue %v", res.RequeueAfter, tc.wantRequeue)
			}
			got, err := client.NetworkingV1().ServiceCIDRs().Get(context.Background(), tc.target, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if has := slices.Contains(got.Finalizers, Finalizer); has != tc.wantFinalizer {
				t.Errorf("finalizer present %v, want %v", has, tc.wantFinalizer)
			}
			if ready := readyStatus(got); ready != tc.wantReady {
				t.Errorf("Ready %q, want %q (%+v)", ready, tc.wantReady, got.Status.Conditions)
			}
		})
	}
}

// Once the grace period has passed, an unblocked ServiceCIDR loses its
// finalizer.
func TestReleaseAfterGrace(t *testing.T) {
	c, client := newController(t, cidr("extra", true, "10.50.0.0/24"))
	c.clock = clocktesting.NewFakePassiveClock(now.Add(DeletionGracePeriod))
	if _, err := c.reconcile(context.Background(), "extra"); err != nil {
		t.Fatal(err)
	}
	got, err := client.NetworkingV1().ServiceCIDRs().Get(context.Background(), "extra", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got.Finalizers, Finalizer) {
		t.Errorf("finalizer kept after the grace period: %v", got.Finalizers)
	}
}

func readyStatus(c *networkingv1.ServiceCIDR) metav1.ConditionStatus {
	for _, cond := range c.Status.Conditions {
		if cond.Type == networkingv1.ServiceCIDRConditionReady {
			return cond.Status
		}
	}
	return ""
}

func newController(t *testing.T, objs ...runtime.Object) (*controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	f := informers.NewSharedInformerFactory(client, 0)
	cidrs, ips := f.Networking().V1().ServiceCIDRs(), f.Networking().V1().IPAddresses()
	c := &controller{client: client, cidrs: cidrs.Lister(), ips: ips.Lister(), queue: sdk.NewQueue[string](Name),
		clock: clocktesting.NewFakePassiveClock(now), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	return c, client
}
