package nodelifecycle

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func toleration(key string, seconds *int64) corev1.Toleration {
	return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds}
}

// defaultTolerations are what DefaultTolerationSeconds admission adds.
func defaultTolerations() []corev1.Toleration {
	return []corev1.Toleration{
		toleration(corev1.TaintNodeNotReady, ptr.To[int64](300)),
		toleration(corev1.TaintNodeUnreachable, ptr.To[int64](300)),
	}
}

func TestTolerationTime(t *testing.T) {
	unreachable := []corev1.Taint{unreachableNoExecute}
	both := []corev1.Taint{unreachableNoExecute, {Key: "maintenance", Effect: corev1.TaintEffectNoExecute}}
	tests := []struct {
		name        string
		taints      []corev1.Taint
		tolerations []corev1.Toleration
		want        time.Duration
		bounded     bool
	}{
		{"no tolerations: at once", unreachable, nil, 0, true},
		{"admission's defaults: 300s", unreachable, defaultTolerations(), 300 * time.Second, true},
		{"forever", unreachable, []corev1.Toleration{toleration(corev1.TaintNodeUnreachable, nil)}, 0, false},
		{"tolerate everything forever", both, []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, 0, false},
		{"negative seconds: at once", unreachable, []corev1.Toleration{toleration(corev1.TaintNodeUnreachable, ptr.To[int64](-5))}, 0, true},
		{"one taint not tolerated: at once", both, defaultTolerations(), 0, true},
		{"the shortest used toleration counts", both,
			[]corev1.Toleration{toleration(corev1.TaintNodeUnreachable, ptr.To[int64](600)), toleration("maintenance", ptr.To[int64](60))}, 60 * time.Second, true},
		{"the first toleration matching a taint is the one used", unreachable,
			[]corev1.Toleration{toleration(corev1.TaintNodeUnreachable, nil), toleration(corev1.TaintNodeUnreachable, ptr.To[int64](5))}, 0, false},
		{"a NoSchedule toleration does not tolerate NoExecute", unreachable,
			[]corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}, 0, true},
	}
	for _, tc := range tests {
		d, bounded := tolerationTime(tc.taints, tc.tolerations)
		if d != tc.want || bounded != tc.bounded {
			t.Errorf("%s: got %v bounded=%v, want %v bounded=%v", tc.name, d, bounded, tc.want, tc.bounded)
		}
	}
}

func TestEvictionTime(t *testing.T) {
	added := metav1.NewTime(t0)
	tainted := []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}}
	unstamped := []corev1.Taint{{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}}
	seen := func(corev1.Taint) time.Time { return t0.Add(time.Minute) }
	pod := func(created time.Time, tol ...corev1.Toleration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}, Spec: corev1.PodSpec{Tolerations: tol}}
	}
	tests := []struct {
		name   string
		pod    *corev1.Pod
		taints []corev1.Taint
		want   time.Time
		ok     bool
	}{
		{"300s after the taint was added", pod(t0.Add(-time.Hour), defaultTolerations()...), tainted, t0.Add(300 * time.Second), true},
		{"a pod created on the tainted node counts from its creation", pod(t0.Add(time.Hour), defaultTolerations()...), tainted, t0.Add(time.Hour + 300*time.Second), true},
		{"a taint without timeAdded counts from when it was first seen",
			pod(t0.Add(-time.Hour), toleration("maintenance", ptr.To[int64](30))), unstamped, t0.Add(time.Minute + 30*time.Second), true},
		{"not tolerated: due since the taint", pod(t0.Add(-time.Hour)), tainted, t0, true},
		{"tolerated forever", pod(t0, toleration("", nil)), tainted, time.Time{}, false},
	}
	for _, tc := range tests {
		at, ok := evictionTime(tc.pod, tc.taints, seen)
		if !at.Equal(tc.want) || ok != tc.ok {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, at, ok, tc.want, tc.ok)
		}
	}
}

func TestStaleReady(t *testing.T) {
	nodeDown := &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(t0)}
	pod := func(st corev1.ConditionStatus, at time.Time) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.NewTime(at)}}}}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		node *corev1.NodeCondition
		want bool
	}{
		{"ready since before the node went down", pod(corev1.ConditionTrue, t0.Add(-time.Minute)), nodeDown, true},
		{"ready reported after the node went down stands", pod(corev1.ConditionTrue, t0.Add(time.Minute)), nodeDown, false},
		{"already not ready", pod(corev1.ConditionFalse, t0.Add(-time.Minute)), nodeDown, false},
		{"node ready", pod(corev1.ConditionTrue, t0.Add(-time.Minute)), &corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue}, false},
		{"no Ready condition on the pod", &corev1.Pod{}, nodeDown, false},
	}
	for _, tc := range tests {
		if got := staleReady(tc.pod, tc.node); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}
