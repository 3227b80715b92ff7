package pods

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// pod builds a pod from options.
func pod(name string, opts ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0)}}
	p.Status.Phase = v1.PodRunning
	p.Spec.NodeName = "node-a"
	for _, o := range opts {
		o(p)
	}
	return p
}

func readyAt(t time.Time) func(*v1.Pod) {
	return func(p *v1.Pod) {
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(t)}}
	}
}

func phase(ph v1.PodPhase) func(*v1.Pod) { return func(p *v1.Pod) { p.Status.Phase = ph } }
func node(n string) func(*v1.Pod)        { return func(p *v1.Pod) { p.Spec.NodeName = n } }
func created(t time.Time) func(*v1.Pod) {
	return func(p *v1.Pod) { p.CreationTimestamp = metav1.NewTime(t) }
}
func cost(c string) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Annotations = map[string]string{DeletionCostAnnotation: c} }
}
func restarts(n int32) func(*v1.Pod) {
	return func(p *v1.Pod) { p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", RestartCount: n}} }
}
func deleting(p *v1.Pod) { ts := metav1.NewTime(t0); p.DeletionTimestamp = &ts }

func TestSortForDeletionPutsTheBestVictimFirst(t *testing.T) {
	now := t0.Add(24 * time.Hour)
	for _, tc := range []struct {
		name          string
		first, second *v1.Pod
		firstRank     int
		secondRank    int
	}{
		{"unscheduled before scheduled", pod("a", node("")), pod("b", readyAt(t0)), 0, 0},
		{"pending before running", pod("a", phase(v1.PodPending)), pod("b"), 0, 0},
		{"unknown before running", pod("a", phase(v1.PodUnknown)), pod("b"), 0, 0},
		{"pending before unknown", pod("a", phase(v1.PodPending)), pod("b", phase(v1.PodUnknown)), 0, 0},
		{"not ready before ready", pod("a"), pod("b", readyAt(t0)), 0, 0},
		{"lower deletion cost first", pod("a", readyAt(t0), cost("-5")), pod("b", readyAt(t0), cost("10")), 0, 0},
		{"more colocated siblings first", pod("a", readyAt(t0)), pod("b", readyAt(t0)), 3, 1},
		{"ready for a shorter time first", pod("a", readyAt(now.Add(-time.Minute))), pod("b", readyAt(now.Add(-time.Hour))), 0, 0},
		{"more restarts first", pod("a", readyAt(t0), restarts(4)), pod("b", readyAt(t0), restarts(1)), 0, 0},
		{"newer first", pod("a", created(now.Add(-time.Minute))), pod("b", created(now.Add(-10*time.Hour))), 0, 0},
		{"zero creation time first", pod("a", created(time.Time{})), pod("b"), 0, 0},
		{"same log-scale age: by uid", pod("a", created(now.Add(-100*time.Second))), pod("b", created(now.Add(-101*time.Second))), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range [][2]int{{0, 1}, {1, 0}} {
				in := []*v1.Pod{tc.first, tc.second}
				ranks := []int{tc.firstRank, tc.secondRank}
				ps := []*v1.Pod{in[order[0]], in[order[1]]}
				rs := []int{ranks[order[0]], ranks[order[1]]}
				SortForDeletion(ps, rs, now)
				if ps[0] != tc.first {
					t.Errorf("from order %v: %s sorted before %s", order, ps[0].Name, ps[1].Name)
				}
				if rs[0] != tc.firstRank {
					t.Errorf("ranks did not move with their pods: %v", rs)
				}
			}
		})
	}
}

func TestAvailability(t *testing.T) {
	for _, tc := range []struct {
		name            string
		p               *v1.Pod
		minReadySeconds int32
		now             time.Time
		want            bool
	}{
		{"not ready", pod("a"), 0, t0, false},
		{"ready, no minReadySeconds", pod("a", readyAt(t0)), 0, t0, true},
		{"ready too briefly", pod("a", readyAt(t0)), 10, t0.Add(9 * time.Second), false},
		{"ready exactly long enough", pod("a", readyAt(t0)), 10, t0.Add(10 * time.Second), true},
		{"ready without transition time", pod("a", readyAt(time.Time{})), 10, t0, false},
	} {
		if got := IsAvailable(tc.p, tc.minReadySeconds, tc.now); got != tc.want {
			t.Errorf("%s: IsAvailable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNextAvailabilityCheckIsTheEarliestPendingPod(t *testing.T) {
	ps := []*v1.Pod{pod("late", readyAt(t0.Add(5*time.Second))), pod("early", readyAt(t0)), pod("unready")}
	got := NextAvailabilityCheck(ps, 10, t0.Add(2*time.Second), t0.Add(3*time.Second))
	if got == nil || *got != 7*time.Second {
		t.Errorf("next check = %v, want 7s (early pod, measured again at the later now)", got)
	}
	if got := NextAvailabilityCheck(ps, 10, t0.Add(2*time.Second), t0.Add(11*time.Second)); got == nil || *got != 0 {
		t.Errorf("next check after its moment = %v, want 0", got)
	}
	if got := NextAvailabilityCheck(ps, 0, t0, t0); got != nil {
		t.Errorf("next check without minReadySeconds = %v, want none", *got)
	}
}

func TestDeletionCostParsesLikeTheAPIServer(t *testing.T) {
	for in, want := range map[string]int32{"": 0, "7": 7, "-3": -3, "-03": -3, "0": 0, "+5": 0, "05": 0, "x": 0, "99999999999": 0} {
		if got := DeletionCost(pod("a", cost(in))); got != want {
			t.Errorf("DeletionCost(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestActiveAndTerminating(t *testing.T) {
	for _, tc := range []struct {
		p                   *v1.Pod
		active, terminating bool
	}{
		{pod("running"), true, false},
		{pod("succeeded", phase(v1.PodSucceeded)), false, false},
		{pod("failed", phase(v1.PodFailed)), false, false},
		{pod("deleting", deleting), false, true},
		{pod("failed-deleting", phase(v1.PodFailed), deleting), false, false},
	} {
		if IsActive(tc.p) != tc.active || IsTerminating(tc.p) != tc.terminating {
			t.Errorf("%s: active %v terminating %v", tc.p.Name, IsActive(tc.p), IsTerminating(tc.p))
		}
	}
}

func TestColocationRanksCountActiveSiblingsOnTheSameNode(t *testing.T) {
	a1, a2, b1 := pod("a1", node("a")), pod("a2", node("a")), pod("b1", node("b"))
	gone := pod("a3", node("a"), deleting)
	ranks := ColocationRanks([]*v1.Pod{a1, b1}, []*v1.Pod{a1, a2, b1, gone})
	if ranks[0] != 2 || ranks[1] != 1 {
		t.Errorf("ranks = %v, want [2 1]", ranks)
	}
}
