package pods

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDeadlineLeft(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	started := metav1.NewTime(now.Add(-10 * time.Second))
	cases := []struct {
		name     string
		deadline *int64
		start    *metav1.Time
		left     time.Duration
		ok       bool
	}{
		{"no deadline", nil, &started, 0, false},
		{"not started", ptr.To[int64](5), nil, 0, false},
		{"zero start time", ptr.To[int64](5), &metav1.Time{}, 0, false},
		{"time left", ptr.To[int64](30), &started, 20 * time.Second, true},
		{"lowered below the time run", ptr.To[int64](5), &started, -5 * time.Second, true},
		{"exactly at the deadline", ptr.To[int64](10), &started, 0, true},
	}
	for _, tc := range cases {
		left, ok := deadlineLeft(&v1.PodSpec{ActiveDeadlineSeconds: tc.deadline}, tc.start, now)
		if left != tc.left || ok != tc.ok {
			t.Errorf("%s: left %v ok %v, want %v %v", tc.name, left, ok, tc.left, tc.ok)
		}
	}
}

type fakeNode struct{}

func (fakeNode) HostIPs() []string            { return []string{"10.0.0.1"} }
func (fakeNode) Allocatable() v1.ResourceList { return nil }
func (fakeNode) Capacity() v1.ResourceList    { return nil }
func (fakeNode) PodCIDR() string              { return "10.244.0.0/24" }
func (fakeNode) Labels() map[string]string    { return nil }
func (fakeNode) ObjectTTL() time.Duration     { return 0 }

// TestStatusPastDeadline: a pod past its active deadline is reported
// Failed with kubelet's reason and message and is no longer ready, whatever
// its containers do; a pod within it is not; a terminal phase stays.
func TestStatusPastDeadline(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	m := &Manager{clock: clock, opts: Options{Node: fakeNode{}}}
	m.probes = newProber(m)
	started := metav1.NewTime(clock.Now().Add(-time.Minute))
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}}, ActiveDeadlineSeconds: ptr.To[int64](120)},
		Status:     v1.PodStatus{Phase: v1.PodPending, StartTime: &started},
	}
	w := newWorker(m, pod.UID)
	if st := w.status(pod, podContainers{}, true, false); st.Phase != v1.PodPending || st.Reason != "" {
		t.Fatalf("within the deadline: phase %s reason %q", st.Phase, st.Reason)
	}
	pod.Spec.ActiveDeadlineSeconds = ptr.To[int64](30) // lowered on the live pod
	st := w.status(pod, podContainers{}, true, false)
	if st.Phase != v1.PodFailed || st.Reason != "DeadlineExceeded" || st.Message != "Pod was active on the node longer than the specified deadline" {
		t.Fatalf("past the deadline: phase %s reason %q message %q", st.Phase, st.Reason, st.Message)
	}
	if c := condition(st.Conditions, v1.PodReady); c.Status != v1.ConditionFalse || c.Reason != "PodFailed" {
		t.Errorf("Ready of a pod past its deadline: %+v", c)
	}
	// A pod that completed before is not turned into a failure.
	pod.Status.Phase = v1.PodSucceeded
	if st := w.status(pod, podContainers{}, false, true); st.Phase != v1.PodSucceeded || st.Reason != "" {
		t.Errorf("a succeeded pod past its deadline: phase %s reason %q", st.Phase, st.Reason)
	}
}
