package pods

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What kubelet reports of a pod that outlived spec.activeDeadlineSeconds.
const (
	reasonDeadlineExceeded  = "DeadlineExceeded"
	messageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// deadlineLeft is how long the pod may still be active by its
// activeDeadlineSeconds, counted from its start time (kubelet's rule: the
// field may be lowered on a live pod, and the new value counts from the same
// start). ok is false without a deadline or before the pod started.
func deadlineLeft(spec *v1.PodSpec, startTime *metav1.Time, now time.Time) (left time.Duration, ok bool) {
	if spec.ActiveDeadlineSeconds == nil || startTime == nil || startTime.IsZero() {
		return 0, false
	}
	allowed := time.Duration(*spec.ActiveDeadlineSeconds) * time.Second
	return allowed - now.Sub(startTime.Time), true
}

// startTime is the pod's start time: the one this worker wrote, else the
// API's.
func (w *worker) startTime(pod *v1.Pod) *metav1.Time {
	if w.written != nil && w.written.StartTime != nil {
		return w.written.StartTime
	}
	return pod.Status.StartTime
}

// pastDeadline: the pod ran longer than its active deadline.
func (w *worker) pastDeadline(pod *v1.Pod) bool {
	left, ok := deadlineLeft(&pod.Spec, w.startTime(pod), w.m.clock.Now())
	return ok && left <= 0
}

// untilDeadline shortens next to the time left before the pod's deadline.
func (w *worker) untilDeadline(pod *v1.Pod, next time.Duration) time.Duration {
	if left, ok := deadlineLeft(&pod.Spec, w.startTime(pod), w.m.clock.Now()); ok && left > 0 && left < next {
		return left
	}
	return next
}

// deadlineExceeded fails a pod past its deadline as kubelet does: the
// phase Failed with reason DeadlineExceeded is reported first, then the
// containers stop within the pod's grace period and the final container
// states follow.
func (w *worker) deadlineExceeded(ctx context.Context, pod *v1.Pod) (time.Duration, error) {
	cs, err := w.containers(ctx)
	if err != nil {
		return 0, err
	}
	w.m.event(pod, v1.EventTypeNormal, reasonDeadlineExceeded, "%s", messageDeadlineExceeded)
	// status reports the deadline's failure (see status).
	if err := w.writeStatus(ctx, pod, w.status(pod, cs, w.sandbox != nil, true)); err != nil {
		return 0, err
	}
	return w.m.opts.SyncInterval, w.stopAndReport(ctx, pod)
}
