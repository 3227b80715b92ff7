package main

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestTrackerStartupParts(t *testing.T) {
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	clock := t0
	tr := newTracker()
	tr.now = func() time.Time { return clock }
	pod := func(uid, node string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}, Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: phase}}
	}
	at := func(d time.Duration, p *corev1.Pod) { clock = t0.Add(d); tr.observe(p, false) }

	at(0, pod("a", "", corev1.PodPending))               // created
	at(3*time.Second, pod("a", "n1", corev1.PodPending)) // bound
	at(4*time.Second, pod("a", "n1", corev1.PodRunning)) // Running
	// Seen first with its node and Running at once: nothing waits to bind.
	at(5*time.Second, pod("b", "n2", corev1.PodRunning))
	// Never Running: not counted.
	at(6*time.Second, pod("c", "", corev1.PodPending))
	// Seen before the window: not counted.
	clock = t0.Add(-time.Second)
	tr.observe(pod("d", "", corev1.PodPending), false)
	at(7*time.Second, pod("d", "n1", corev1.PodRunning))

	total, toBound, toRunning := tr.startups(t0, t0.Add(time.Minute))
	slices.Sort(total)
	slices.Sort(toBound)
	slices.Sort(toRunning)
	if want := []time.Duration{0, 4 * time.Second}; !slices.Equal(total, want) {
		t.Errorf("total = %v, want %v", total, want)
	}
	if want := []time.Duration{0, 3 * time.Second}; !slices.Equal(toBound, want) {
		t.Errorf("seen to bound = %v, want %v", toBound, want)
	}
	if want := []time.Duration{0, time.Second}; !slices.Equal(toRunning, want) {
		t.Errorf("bound to Running = %v, want %v", toRunning, want)
	}
}
