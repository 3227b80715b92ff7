package queue

import (
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
)

func info(name string, prio int32, mutate ...func(*v1.Pod)) *cluster.PodInfo {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name)}, Spec: v1.PodSpec{Priority: &prio}}
	for _, m := range mutate {
		m(p)
	}
	return cluster.NewPodInfo(p)
}

func popNames(q *Queue) []string {
	var out []string
	for qp := q.Pop(); qp != nil; qp = q.Pop() {
		out = append(out, qp.Info.Pod.Name)
	}
	return out
}

func TestPopOrder(t *testing.T) {
	clk := clockwork.NewFakeClock()
	q := New(Config{}, clk)
	q.Add(info("low", 1))
	clk.Advance(time.Millisecond)
	q.Add(info("high", 100))
	clk.Advance(time.Millisecond)
	q.Add(info("low2", 1))
	q.Add(info("mid", 50))
	if got, want := popNames(q), []string{"high", "mid", "low", "low2"}; !slices.Equal(got, want) {
		t.Fatalf("pop order %v, want %v (priority, then arrival)", got, want)
	}
}

func TestBackoffDoublesUpToMax(t *testing.T) {
	q := New(Config{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}, clockwork.NewFakeClock())
	for failures, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 20: 10 * time.Second} {
		if got := q.backoffFor(failures); got != want {
			t.Errorf("backoff after %d failures = %s, want %s", failures, got, want)
		}
	}
}

func TestErroredPodWaitsForItsBackoff(t *testing.T) {
	clk := clockwork.NewFakeClock()
	q := New(Config{}, clk)
	q.Add(info("p", 0))
	qp := q.Pop()
	q.AddBackoff(qp)
	if got := q.Pop(); got != nil {
		t.Fatalf("popped %s during its error backoff", got.Info.Pod.Name)
	}
	next, ok := q.NextBackoff()
	if !ok || next.Sub(clk.Now()) != time.Second {
		t.Fatalf("next backoff in %s (%v), want 1s", next.Sub(clk.Now()), ok)
	}
	clk.Advance(time.Second)
	if got := q.Pop(); got == nil || got.Attempts != 2 {
		t.Fatalf("after the backoff: %+v, want the pod on its 2nd attempt", got)
	}
}

func TestUnschedulableMovesOnRelevantEvents(t *testing.T) {
	clk := clockwork.NewFakeClock()
	q := New(Config{}, clk)
	resources := placement.FilterSet(0).With(placement.FilterNodeResourcesFit)
	taints := placement.FilterSet(0).With(placement.FilterTaintToleration)
	q.Add(info("cpu", 0))
	q.Add(info("tainted", 0))
	q.Add(info("nonodes", 0))
	q.AddUnschedulable(q.Pop(), resources)
	q.AddUnschedulable(q.Pop(), taints)
	q.AddUnschedulable(q.Pop(), 0)
	if a, b, u := q.Counts(); a != 0 || b != 0 || u != 3 {
		t.Fatalf("counts active %d backoff %d unschedulable %d, want 0 0 3", a, b, u)
	}
	if moved := q.Move(resources, nil); moved != 2 {
		t.Fatalf("a resources event moved %d pods, want 2 (the cpu pod and the one no filter rejected)", moved)
	}
	// Moved pods still in backoff wait in the backoff heap but are popped
	// when nothing else is active.
	if _, b, u := q.Counts(); b != 2 || u != 1 {
		t.Fatalf("after the move: backoff %d unschedulable %d, want 2 and 1", b, u)
	}
	if got := popNames(q); len(got) != 2 {
		t.Fatalf("popped %v, want the 2 moved pods", got)
	}
	clk.Advance(6 * time.Minute)
	if n := q.FlushUnschedulable(); n != 1 {
		t.Fatalf("flush moved %d, want the tainted pod after 5 min", n)
	}
}

func TestGatedPodsWaitForTheirGates(t *testing.T) {
	q := New(Config{}, clockwork.NewFakeClock())
	gated := info("g", 0, func(p *v1.Pod) { p.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/wait"}} })
	q.Add(gated)
	if q.Pop() != nil {
		t.Fatal("a gated pod was popped")
	}
	q.Add(info("g", 0))
	if qp := q.Pop(); qp == nil || qp.Info.Pod.Name != "g" {
		t.Fatalf("pod not released once its gates were removed: %+v", qp)
	}
}

func TestUpdateAndDelete(t *testing.T) {
	q := New(Config{}, clockwork.NewFakeClock())
	q.Add(info("p", 0))
	q.AddUnschedulable(q.Pop(), placement.FilterSet(0).With(placement.FilterNodeAffinity))
	// A status-only update does not requeue the pod.
	q.Add(info("p", 0, func(p *v1.Pod) { p.Status.NominatedNodeName = "x" }))
	if _, _, u := q.Counts(); u != 1 {
		t.Fatal("a status update requeued an unschedulable pod")
	}
	q.Add(info("p", 0, func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"zone": "b"} }))
	if _, b, u := q.Counts(); u != 0 || b != 1 {
		t.Fatal("a spec update did not requeue an unschedulable pod")
	}
	q.Delete("p")
	if q.Len() != 0 || q.Pop() != nil {
		t.Fatal("deleted pod still queued")
	}
}

func TestActivate(t *testing.T) {
	q := New(Config{}, clockwork.NewFakeClock())
	q.Add(info("p", 0))
	q.AddUnschedulable(q.Pop(), placement.FilterSet(0).With(placement.FilterNodeAffinity))
	q.Activate("p")
	if qp := q.Pop(); qp == nil {
		t.Fatal("activated pod not popped")
	}
}
