package pods

import (
	"context"
	"fmt"

	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// status computes the pod's status from what runs.
func (w *worker) status(pod *v1.Pod, cs podContainers, sandboxReady, terminal bool) v1.PodStatus {
	old := pod.Status
	if w.written != nil {
		old = *w.written
	}
	initStatuses, statuses, ephemeral := w.containerStatuses(pod, cs)
	initialized := false // a regular container was created
	for i := range pod.Spec.Containers {
		initialized = initialized || cs.latest(pod.Spec.Containers[i].Name) != nil
	}
	st := v1.PodStatus{
		Phase:                      podPhase(&pod.Spec, initStatuses, statuses, terminal, initialized),
		InitContainerStatuses:      initStatuses,
		ContainerStatuses:          statuses,
		EphemeralContainerStatuses: ephemeral,
		QOSClass:                   pod.Status.QOSClass,
		ObservedGeneration:         pod.Generation,
		// Set once, when the agent first reports the pod; the informer's
		// copy may not show it yet.
		StartTime: old.StartTime,
	}
	switch {
	case old.Phase == v1.PodSucceeded || old.Phase == v1.PodFailed:
		st.Phase = old.Phase // a terminal phase never changes back
	case w.pastDeadline(pod):
		// As kubelet's active deadline handler: the pod fails whatever
		// its containers do.
		st.Phase, st.Reason, st.Message = v1.PodFailed, reasonDeadlineExceeded, messageDeadlineExceeded
	}
	if st.Phase == old.Phase {
		st.Reason, st.Message = old.Reason, old.Message
	}
	if st.StartTime == nil {
		now := metav1.NewTime(w.m.clock.Now())
		st.StartTime = &now
	}
	hostIPs := w.m.opts.Node.HostIPs()
	if len(hostIPs) > 0 {
		st.HostIP = hostIPs[0]
		for _, ip := range hostIPs {
			st.HostIPs = append(st.HostIPs, v1.HostIP{IP: ip})
		}
	}
	if w.sandbox != nil {
		if w.sandbox.podIP != "" {
			st.PodIP = w.sandbox.podIP
			for _, ip := range w.sandbox.podIPs {
				st.PodIPs = append(st.PodIPs, v1.PodIP{IP: ip})
			}
		}
	} else if old.PodIP != "" {
		st.PodIP, st.PodIPs = old.PodIP, old.PodIPs
		if len(st.PodIPs) == 0 {
			st.PodIPs = []v1.PodIP{{IP: old.PodIP}}
		}
	}
	var others []v1.PodCondition
	for _, c := range pod.Status.Conditions {
		if !ownedByAgent(c.Type) {
			others = append(others, c)
		}
	}
	st.Conditions = append([]v1.PodCondition{}, others...)
	if !terminal && st.Phase != v1.PodSucceeded && st.Phase != v1.PodFailed {
		st.Conditions = append(st.Conditions, w.resizeConditions()...)
	}
	st.Conditions = append(st.Conditions, podConditions(pod, st.Phase, initStatuses, statuses, sandboxReady && !terminal, others)...)
	keepTransitionTimes(st.Conditions, old.Conditions, metav1.NewTime(w.m.clock.Now()))
	normalizeTimes(&st)
	return st
}

// normalizeTimes truncates the status's times to the second, as the API
// stores them (RFC 3339), like kubelet's status manager does: a status
// compared with what the API echoes back must not differ by nanoseconds,
// or every echo would cause another write.
func normalizeTimes(st *v1.PodStatus) {
	trunc := func(t *metav1.Time) {
		if t != nil && !t.IsZero() {
			*t = t.Rfc3339Copy()
		}
	}
	if st.StartTime != nil {
		t := st.StartTime.Rfc3339Copy()
		st.StartTime = &t
	}
	for i := range st.Conditions {
		trunc(&st.Conditions[i].LastProbeTime)
		trunc(&st.Conditions[i].LastTransitionTime)
	}
	for _, l := range [][]v1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range l {
			for _, cs := range []*v1.ContainerState{&l[i].State, &l[i].LastTerminationState} {
				if cs.Running != nil {
					trunc(&cs.Running.StartedAt)
				}
				if cs.Terminated != nil {
					trunc(&cs.Terminated.StartedAt)
					trunc(&cs.Terminated.FinishedAt)
				}
			}
		}
	}
}

// containerStatuses are the statuses of the pod's init, regular and
// ephemeral containers (nil for a kind the pod has none of).
func (w *worker) containerStatuses(pod *v1.Pod, cs podContainers) (initStatuses, statuses, ephemeral []v1.ContainerStatus) {
	defaultWaiting := reasonContainerCreating
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		kind := kindInit
		if isSidecar(c) {
			kind = kindSidecar
		}
		st := containerStatus(c, w.observed(pod, c, cs), reasonPodInitializing, kind)
		w.resizeStatus(&st, c, cs.latest(c.Name))
		initStatuses = append(initStatuses, st)
		defaultWaiting = reasonPodInitializing
	}
	statuses = make([]v1.ContainerStatus, 0, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st := containerStatus(c, w.observed(pod, c, cs), defaultWaiting, kindRegular)
		w.resizeStatus(&st, c, cs.latest(c.Name))
		statuses = append(statuses, st)
	}
	for i := range pod.Spec.EphemeralContainers {
		c := (*v1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		st := containerStatus(c, w.observed(pod, c, cs), defaultWaiting, kindEphemeral)
		w.resizeStatus(&st, c, cs.latest(c.Name))
		ephemeral = append(ephemeral, st)
	}
	return initStatuses, statuses, ephemeral
}

// observed gathers what the agent knows of one container.
func (w *worker) observed(pod *v1.Pod, c *v1.Container, cs podContainers) observed {
	var obs observed
	if cur := cs.latest(c.Name); cur != nil {
		obs.current = w.m.attemptOf(pod, c, cur)
		if cur.State == runtime.StateRunning {
			obs.started, obs.ready, _ = w.m.probes.verdicts(c, cur.ID)
		}
	}
	if prev := cs.previous(c.Name); prev != nil {
		obs.previous = w.m.attemptOf(pod, c, prev)
	}
	obs.waiting = w.waiting[c.Name]
	if obs.current != nil && obs.current.running {
		obs.waiting = nil
	}
	return obs
}

// writeStatus writes st when it differs from what was written last.
func (w *worker) writeStatus(ctx context.Context, pod *v1.Pod, st v1.PodStatus) error {
	if w.written != nil && equality.Semantic.DeepEqual(*w.written, st) {
		return nil
	}
	if w.written == nil && equality.Semantic.DeepEqual(pod.Status, st) {
		w.written = &st
		return nil
	}
	cur := pod.DeepCopy()
	for attempt := 0; ; attempt++ {
		cur.Status = st
		start := w.m.clock.Now()
		_, err := w.m.opts.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			w.m.log.Debug("pod status written", "pod", podKey(pod), "phase", st.Phase, "took", w.m.clock.Since(start))
			w.written = &st
			return nil
		}
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile; the informer will say so
		}
		if !apierrors.IsConflict(err) || attempt >= 3 {
			return fmt.Errorf("updating status: %w", err)
		}
		fresh, gerr := w.m.opts.Client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("updating status: %w", gerr)
		}
		if fresh.UID != pod.UID {
			return nil
		}
		// Keep the conditions others set meanwhile (readiness gates).
		var others []v1.PodCondition
		for _, c := range fresh.Status.Conditions {
			if !ownedByAgent(c.Type) {
				others = append(others, c)
			}
		}
		var mine []v1.PodCondition
		for _, c := range st.Conditions {
			if ownedByAgent(c.Type) {
				mine = append(mine, c)
			}
		}
		st.Conditions = append(others, mine...)
		cur = fresh
	}
}

// reportStarted reports, once, how long the pod took until all of its
// containers ran.
func (w *worker) reportStarted(pod *v1.Pod, st v1.PodStatus) {
	if w.started || w.m.opts.PodStarted == nil || st.Phase != v1.PodRunning {
		return
	}
	for _, s := range st.ContainerStatuses {
		if s.State.Running == nil {
			return
		}
	}
	w.started = true
	w.m.opts.PodStarted(pod, w.m.clock.Since(w.firstSeen))
}

// attemptOf describes one container run for the status.
func (m *Manager) attemptOf(pod *v1.Pod, c *v1.Container, rc *runtime.Container) *attempt {
	a := &attempt{
		id:       rc.ID,
		number:   attemptNumber(rc),
		image:    rc.Image,
		imageRef: rc.ImageRef,
		running:  rc.State == runtime.StateRunning,
		exited:   rc.State == runtime.StateExited,
		created:  metav1.NewTime(rc.CreatedAt),
		started:  metav1.NewTime(rc.StartedAt),
		finished: metav1.NewTime(rc.FinishedAt),
		exitCode: rc.ExitCode,
	}
	if a.exited {
		a.reason = rc.Reason
		if a.reason == "" {
			a.reason = exitReason(rc.ExitCode, rc.OOMKilled)
		}
		a.message = rc.Message
		if a.message == "" {
			a.message = m.terminationMessage(pod, c, rc)
		}
	}
	return a
}
