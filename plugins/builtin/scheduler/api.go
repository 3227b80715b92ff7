package scheduler

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/placement"
	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/queue"
)

// noteLengthLimit is the longest event note the API accepts; longer
// messages are cut as upstream cuts them.
const noteLengthLimit = 1024

// bind posts the pod's Binding in the background; the loop has already
// assumed the pod on the node, so the next pods see its requests. It waits
// for a free slot first, which holds the loop back when the API server is
// the bottleneck. A pod with a volume plan first has its volumes bound,
// without holding a slot while the claims are provisioned.
func (s *Scheduler) bind(ctx context.Context, qp *queue.QueuedPod, assumed *cluster.PodInfo, node string, plan *placement.VolumePlan) {
	pod := assumed.Pod
	if plan != nil {
		s.inflight.Add(1)
		go func() {
			defer s.inflight.Done()
			err := s.bindVolumes(ctx, pod, plan)
			if err == nil {
				err = s.acquireBindSlot(ctx)
			}
			if err != nil {
				s.inbox.push(bindResult{qp: qp, node: node, err: fmt.Errorf("running PreBind plugin \"VolumeBinding\": %w", err)})
				return
			}
			s.postBinding(ctx, qp, pod, node)
		}()
		return
	}
	if err := s.acquireBindSlot(ctx); err != nil {
		s.cache.ForgetPod(pod.UID)
		return
	}
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		s.postBinding(ctx, qp, pod, node)
	}()
}

func (s *Scheduler) acquireBindSlot(ctx context.Context) error {
	select {
	case s.bindSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// postBinding binds the pod to the node, holding a bind slot it releases.
func (s *Scheduler) postBinding(ctx context.Context, qp *queue.QueuedPod, pod *v1.Pod, node string) {
	defer func() { <-s.bindSlots }()
	b := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err != nil {
		err = fmt.Errorf("binding pod %s to node %s: %w", podKey(pod), node, err)
	} else {
		s.recorder.Eventf(pod, nil, v1.EventTypeNormal, "Scheduled", "Binding", "Successfully assigned %v/%v to %v", pod.Namespace, pod.Name, node)
	}
	s.inbox.push(bindResult{qp: qp, node: node, err: err})
}

// recordFailure emits the FailedScheduling event and sets the pod's
// PodScheduled condition (and nominated node) when they changed.
func (s *Scheduler) recordFailure(ctx context.Context, pod *v1.Pod, reason, msg string, nom nominationChange) {
	s.recorder.Eventf(pod, nil, v1.EventTypeWarning, "FailedScheduling", "Scheduling", "%s", truncate(msg))
	cond, condChanged := scheduledCondition(pod, reason, msg, metav1.NewTime(s.clock.Now()))
	nnnChanged := nom.mode == nominationSet && pod.Status.NominatedNodeName != nom.node
	if !condChanged && !nnnChanged {
		return
	}
	status := map[string]any{"conditions": []v1.PodCondition{cond}}
	if nnnChanged {
		if nom.node == "" {
			status["nominatedNodeName"] = nil
		} else {
			status["nominatedNodeName"] = nom.node
		}
	}
	s.patchStatus(ctx, pod, status)
}

// scheduledCondition is PodScheduled=False with reason and message, keeping
// the transition time when the status does not change.
func scheduledCondition(pod *v1.Pod, reason, msg string, now metav1.Time) (v1.PodCondition, bool) {
	cond := v1.PodCondition{
		Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: reason, Message: msg,
		ObservedGeneration: pod.Generation, LastTransitionTime: now,
	}
	for _, old := range pod.Status.Conditions {
		if old.Type != v1.PodScheduled {
			continue
		}
		if old.Status == cond.Status {
			cond.LastTransitionTime = old.LastTransitionTime
		}
		changed := old.Status != cond.Status || old.Reason != reason || old.Message != msg || old.ObservedGeneration != pod.Generation
		return cond, changed
	}
	return cond, true
}

// patchStatus applies a strategic merge patch to the pod's status in the
// background. Conditions merge by type, so only the listed ones change.
func (s *Scheduler) patchStatus(ctx context.Context, pod *v1.Pod, status map[string]any) {
	body, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		s.log.Error("encoding pod status patch", "pod", podKey(pod), "err", err)
		return
	}
	s.async(ctx, func() {
		_, err := s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status")
		if err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			s.log.Error("updating pod status", "pod", podKey(pod), "err", err)
		}
	})
}

// async runs an API call in the background within the slot limit.
func (s *Scheduler) async(ctx context.Context, call func()) {
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		select {
		case s.apiSlots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-s.apiSlots }()
		call()
	}()
}

// executePreemption clears the nominations of lower-priority pods on the
// node (they may no longer fit there) and evicts the victims: each gets the
// DisruptionTarget condition, a graceful delete and a Preempted event. On
// failure the preemptor is retried at once rather than waiting for an event
// that will not come.
func (s *Scheduler) executePreemption(ctx context.Context, preemptor *v1.Pod, p *placement.Preemption, lower []*cluster.PodInfo) {
	for _, l := range lower {
		s.patchStatus(ctx, l.Pod, map[string]any{"nominatedNodeName": nil})
	}
	for _, victim := range p.Victims {
		s.async(ctx, func() {
			if err := s.evict(ctx, preemptor, victim, p.Node); err != nil && ctx.Err() == nil {
				s.log.Error("preempting pod", "victim", podKey(victim), "preemptor", podKey(preemptor), "err", err)
				s.inbox.push(activate{pod: preemptor})
			}
		})
	}
}

func (s *Scheduler) evict(ctx context.Context, preemptor, victim *v1.Pod, node string) error {
	cond := v1.PodCondition{
		Type: v1.DisruptionTarget, Status: v1.ConditionTrue, Reason: v1.PodReasonPreemptionByScheduler,
		Message:            fmt.Sprintf("%s: preempting to accommodate a higher priority pod", s.cfg.schedulerName),
		ObservedGeneration: victim.Generation, LastTransitionTime: metav1.NewTime(s.clock.Now()),
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.PodCondition{cond}}})
	if err != nil {
		return fmt.Errorf("encoding DisruptionTarget condition: %w", err)
	}
	pods := s.client.CoreV1().Pods(victim.Namespace)
	if _, err := pods.Patch(ctx, victim.Name, types.StrategicMergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("adding the DisruptionTarget condition: %w", err)
	}
	uid := victim.UID
	err = pods.Delete(ctx, victim.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting: %w", err)
	}
	s.recorder.Eventf(victim, preemptor, v1.EventTypeNormal, "Preempted", "Preempting", "Preempted by pod %v on node %v", preemptor.UID, node)
	return nil
}

func truncate(msg string) string {
	if len(msg) <= noteLengthLimit {
		return msg
	}
	const suffix = " ..."
	return msg[:noteLengthLimit-len(suffix)] + suffix
}
