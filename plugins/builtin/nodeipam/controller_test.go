package nodeipam

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keelson/keelson/plugins/sdk"
)

// run starts the plugin's controller against a fake API holding nodes, and
// stops it when the test ends.
func run(t *testing.T, config string, nodes ...*corev1.Node) *fake.Clientset {
	t.Helper()
	cs := fake.NewClientset()
	for _, n := range nodes {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(trimNode))
	work, err := setup(ctx, sdk.Env{Config: json.RawMessage(config), Logger: slog.New(slog.DiscardHandler)}, cs, factory)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- work(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		factory.Shutdown()
	})
	return cs
}

func newNode(name string, cidrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	}
	return n
}

// waitCIDRs waits until the node has podCIDRs and returns them.
func waitCIDRs(t *testing.T, cs *fake.Clientset, name string) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err == nil && len(n.Spec.PodCIDRs) > 0 {
			if n.Spec.PodCIDR != n.Spec.PodCIDRs[0] {
				t.Fatalf("node %s podCIDR %q is not its first podCIDRs entry %v", name, n.Spec.PodCIDR, n.Spec.PodCIDRs)
			}
			return n.Spec.PodCIDRs
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("node %s got no podCIDRs", name)
	return nil
}

func events(cs *fake.Clientset, reason string) []string {
	list, _ := cs.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
	var out []string
	for _, e := range list.Items {
		if e.Reason == reason {
			out = append(out, e.InvolvedObject.Name+": "+e.Message)
		}
	}
	return out
}

// TestRebuildsBeforeAllocating: ranges Nodes already hold (written by a
// previous leader's plugin) are never handed out again.
func TestRebuildsBeforeAllocating(t *testing.T) {
	cs := run(t, `{"clusterCIDR":"10.42.0.0/16"}`,
		newNode("a", "10.42.0.0/24"), newNode("b", "10.42.1.0/24"), newNode("c"), newNode("d"))
	got := []string{waitCIDRs(t, cs, "c")[0], waitCIDRs(t, cs, "d")[0]}
	slices.Sort(got)
	if strings.Join(got, " ") != "10.42.2.0/24 10.42.3.0/24" {
		t.Errorf("new nodes got %v, want the two ranges after the held ones", got)
	}
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), newNode("e"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitCIDRs(t, cs, "e"); got[0] != "10.42.4.0/24" {
		t.Errorf("a node created later got %v, want 10.42.4.0/24", got)
	}
}

func TestDualStack(t *testing.T) {
	cs := run(t, `{"clusterCIDR":"10.42.0.0/16,fd42::/56"}`, newNode("a"))
	if got := waitCIDRs(t, cs, "a"); strings.Join(got, " ") != "10.42.0.0/24 fd42::/64" {
		t.Errorf("dual-stack node got %v, want an IPv4 and an IPv6 range", got)
	}
}

func TestServiceRangeKeptOut(t *testing.T) {
	cs := run(t, `{"clusterCIDR":"10.0.0.0/16","serviceCIDR":"10.0.0.0/23"}`, newNode("a"))
	if got := waitCIDRs(t, cs, "a"); got[0] != "10.0.2.0/24" {
		t.Errorf("node got %v inside the service range, want 10.0.2.0/24", got)
	}
}

// TestExhaustionAndRelease: with every range taken a new node waits, with
// a CIDRNotAvailable event, and gets the range of a node deleted later.
func TestExhaustionAndRelease(t *testing.T) {
	cs := run(t, `{"clusterCIDR":"10.42.0.0/23","nodeCIDRMaskSize":24}`, newNode("a"), newNode("b"))
	waitCIDRs(t, cs, "a")
	bRange := waitCIDRs(t, cs, "b")
	if _, err := cs.CoreV1().Nodes().Create(context.Background(), newNode("c"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(events(cs, "CIDRNotAvailable")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no CIDRNotAvailable event for node c")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := events(cs, "CIDRNotAvailable")[0]; got != "c: Node c status is now: CIDRNotAvailable" {
		t.Errorf("event: %q", got)
	}
	if err := cs.CoreV1().Nodes().Delete(context.Background(), "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := waitCIDRs(t, cs, "c"); got[0] != bRange[0] {
		t.Errorf("node c got %v, want the deleted node's %v", got, bRange)
	}
}

// TestNeverTwice: many nodes at once all get distinct ranges.
func TestNeverTwice(t *testing.T) {
	var nodes []*corev1.Node
	for _, n := range strings.Fields("n0 n1 n2 n3 n4 n5 n6 n7 n8 n9 n10 n11 n12 n13 n14 n15") {
		nodes = append(nodes, newNode(n))
	}
	cs := run(t, `{"clusterCIDR":"10.42.0.0/20"}`, nodes...)
	seen := map[string]string{}
	for _, n := range nodes {
		r := waitCIDRs(t, cs, n.Name)[0]
		if other, dup := seen[r]; dup {
			t.Fatalf("%s and %s both got %s", other, n.Name, r)
		}
		seen[r] = n.Name
	}
}
