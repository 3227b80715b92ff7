package pods

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons the agent reports, as kubelet names them.
const (
	reasonContainerCreating    = "ContainerCreating"
	reasonPodInitializing      = "PodInitializing"
	reasonCrashLoopBackOff     = "CrashLoopBackOff"
	reasonErrImagePull         = "ErrImagePull"
	reasonImagePullBackOff     = "ImagePullBackOff"
	reasonErrImageNeverPull    = "ErrImageNeverPull"
	reasonInvalidImageName     = "InvalidImageName"
	reasonCreateConfigError    = "CreateContainerConfigError"
	reasonCreateContainerError = "CreateContainerError"
	reasonCompleted            = "Completed"
	reasonError                = "Error"
	reasonOOMKilled            = "OOMKilled"
	reasonStartError           = "StartError"

	condReasonContainersNotReady       = "ContainersNotReady"
	condReasonContainersNotInitialized = "ContainersNotInitialized"
	condReasonReadinessGatesNotReady   = "ReadinessGatesNotReady"
	condReasonPodCompleted             = "PodCompleted"
	condReasonPodFailed                = "PodFailed"
	condReasonSandboxNotReady          = "PodSandboxNotReady"
)

// observed is what the agent knows of one container of a pod.
type observed struct {
	// current is the newest attempt, previous the one before; nil when
	// there is none.
	current, previous *attempt
	// waiting, when set, is why the container is not running now (a
	// back-off, an image pull error) and overrides a terminated current.
	waiting *v1.ContainerStateWaiting
	// ready and started come from the readiness and startup probes (true
	// without such probes once the container runs).
	ready, started bool
}

// attempt is one run of a container.
type attempt struct {
	id       string
	number   int32 // 0 for the first run: the restart count
	image    string
	imageRef string
	running  bool
	exited   bool
	created  metav1.Time
	started  metav1.Time
	finished metav1.Time
	exitCode int32
	reason   string // for an exit: Completed, Error, OOMKilled, StartError
	message  string
}

func (a *attempt) terminated() *v1.ContainerStateTerminated {
	return &v1.ContainerStateTerminated{
		ExitCode:    a.exitCode,
		Reason:      a.reason,
		Message:     a.message,
		StartedAt:   a.started,
		FinishedAt:  a.finished,
		ContainerID: containerIDPrefix + a.id,
	}
}

// containerIDPrefix is the runtime part of containerIDs in statuses.
const containerIDPrefix = "containerd://"

// exitReason names an exit as kubelet does.
func exitReason(code int32, oom bool) string {
	switch {
	case oom:
		return reasonOOMKilled
	case code == 0:
		return reasonCompleted
	default:
		return reasonError
	}
}

// containerStatus turns what the agent observed into a container's status.
// defaultWaiting is the waiting reason of a container never run.
func containerStatus(c *v1.Container, obs observed, defaultWaiting string, kind containerKind) v1.ContainerStatus {
	st := containerStatusOf(c, obs, defaultWaiting, kind)
	if kind == kindEphemeral {
		// No probes run in an ephemeral container: kubelet reports it
		// neither started nor ready.
		st.Started, st.Ready = nil, false
	}
	return st
}

func containerStatusOf(c *v1.Container, obs observed, defaultWaiting string, kind containerKind) v1.ContainerStatus {
	st := v1.ContainerStatus{Name: c.Name, Image: c.Image, Started: new(bool)}
	cur := obs.current
	if cur == nil {
		st.State.Waiting = &v1.ContainerStateWaiting{Reason: defaultWaiting}
		if obs.waiting != nil {
			st.State.Waiting = obs.waiting
		}
		return st
	}
	st.RestartCount = cur.number
	st.ContainerID = containerIDPrefix + cur.id
	if cur.image != "" {
		st.Image = cur.image
	}
	st.ImageID = cur.imageRef
	if obs.previous != nil && obs.previous.exited {
		st.LastTerminationState.Terminated = obs.previous.terminated()
	}
	switch {
	case cur.running:
		st.State.Running = &v1.ContainerStateRunning{StartedAt: cur.started}
		st.Ready = obs.ready
		*st.Started = obs.started
	case cur.exited && obs.waiting != nil:
		// About to be restarted: the exit becomes the last state.
		st.State.Waiting = obs.waiting
		st.LastTerminationState.Terminated = cur.terminated()
	case cur.exited:
		st.State.Terminated = cur.terminated()
		// A completed init container counts as ready, as in kubelet; an
		// exited sidecar does not.
		st.Ready = kind == kindInit && cur.exitCode == 0
	default:
		w := obs.waiting
		if w == nil {
			w = &v1.ContainerStateWaiting{Reason: reasonContainerCreating}
		}
		st.State.Waiting = w
	}
	return st
}

// podPhase follows kubelet's rules: an init container failed for good
// (one its restart policy does not run again) fails the pod; pending init
// work or waiting containers keep it Pending; a running container (a
// sidecar too) makes it Running; all regular containers terminated makes it
// Running while one of them restarts by its restart policy (the
// container's rules and restartPolicy, else the pod's: ContainerRestartRules),
// else Succeeded or Failed. Exited sidecars never count: they restart, or
// were stopped after the regular containers. initialized says a regular
// container was created, so that a restarting sidecar does not put the pod
// back to Pending.
func podPhase(spec *v1.PodSpec, initStatuses, statuses []v1.ContainerStatus, terminal, initialized bool) v1.PodPhase {
	n := countContainers(spec, initStatuses, statuses)
	if n.failedInitForGood > 0 {
		return v1.PodFailed
	}
	switch {
	case n.pendingInit > 0, n.pendingSidecars > 0 && !initialized, n.waiting > 0:
		return v1.PodPending
	case n.running > 0 && n.unknown == 0:
		return v1.PodRunning
	case n.running == 0 && n.stopped > 0 && n.unknown == 0:
		if !terminal && n.stoppedRestarting > 0 {
			return v1.PodRunning
		}
		if n.stopped == n.succeeded {
			return v1.PodSucceeded
		}
		return v1.PodFailed
	default:
		return v1.PodPending
	}
}

// phaseCounts classifies a pod's containers for its phase.
type phaseCounts struct {
	pendingInit, failedInitForGood, pendingSidecars int
	unknown, running, waiting, stopped, succeeded   int
	// stoppedRestarting are the stopped regular containers that run again.
	stoppedRestarting int
}

func countContainers(spec *v1.PodSpec, initStatuses, statuses []v1.ContainerStatus) phaseCounts {
	var n phaseCounts
	for i := range spec.InitContainers {
		c := &spec.InitContainers[i]
		s, ok := findStatus(initStatuses, c.Name)
		switch {
		case isSidecar(c):
			n.countSidecar(s, ok)
		case !ok, s.State.Running != nil:
			n.pendingInit++
		case s.State.Terminated != nil:
			if code := s.State.Terminated.ExitCode; code != 0 && !shouldRestart(spec, c, code) {
				n.failedInitForGood++
			}
		case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
			if code := s.LastTerminationState.Terminated.ExitCode; code != 0 && !shouldRestart(spec, c, code) {
				n.failedInitForGood++
			}
		default:
			n.pendingInit++
		}
	}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		s, ok := findStatus(statuses, c.Name)
		switch {
		case !ok:
			n.unknown++
		case s.State.Running != nil:
			n.running++
		case s.State.Terminated != nil:
			n.stopped++
			code := s.State.Terminated.ExitCode
			if code == 0 {
				n.succeeded++
			}
			if shouldRestart(spec, c, code) {
				n.stoppedRestarting++
			}
		case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
			n.stopped++
			if shouldRestart(spec, c, s.LastTerminationState.Terminated.ExitCode) {
				n.stoppedRestarting++
			}
		case s.State.Waiting != nil:
			n.waiting++
		default:
			n.unknown++
		}
	}
	return n
}

// countSidecar: a running sidecar counts as running (and pending until
// started), one never run as waiting, an exited one not at all.
func (n *phaseCounts) countSidecar(s v1.ContainerStatus, ok bool) {
	switch {
	case !ok:
		n.unknown++
	case s.State.Running != nil:
		if s.Started == nil || !*s.Started {
			n.pendingSidecars++
		}
		n.running++
	case s.State.Terminated != nil:
	case s.State.Waiting != nil && s.LastTerminationState.Terminated != nil:
	case s.State.Waiting != nil:
		n.pendingSidecars++
		n.waiting++
	default:
		n.pendingSidecars++
		n.unknown++
	}
}

func findStatus(list []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// podConditions computes the conditions the agent owns, in kubelet's order:
// PodReadyToStartContainers, Initialized, Ready, ContainersReady,
// PodScheduled. others are the pod's conditions owned by someone else
// (readiness gates read them).
func podConditions(pod *v1.Pod, phase v1.PodPhase, initStatuses, statuses []v1.ContainerStatus, sandboxReady bool, others []v1.PodCondition) []v1.PodCondition {
	gen := pod.Generation
	cond := func(t v1.PodConditionType, ok bool, reason, msg string) v1.PodCondition {
		c := v1.PodCondition{Type: t, Status: v1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: gen}
		if ok {
			c.Status, c.Reason, c.Message = v1.ConditionTrue, "", ""
		}
		return c
	}
	var out []v1.PodCondition
	out = append(out, cond(v1.PodReadyToStartContainers, sandboxReady, "", ""))
	out = append(out, initializedCondition(pod, phase, initStatuses, statuses, cond))
	cr := containersReadyCondition(pod, phase, initStatuses, statuses, cond)
	ready := cr
	ready.Type = v1.PodReady
	if cr.Status == v1.ConditionTrue {
		ready = readinessGates(pod, others, cond)
	}
	out = append(out, ready, cr, cond(v1.PodScheduled, true, "", ""))
	return out
}

type condFunc func(t v1.PodConditionType, ok bool, reason, msg string) v1.PodCondition

func initializedCondition(pod *v1.Pod, phase v1.PodPhase, initStatuses, statuses []v1.ContainerStatus, cond condFunc) v1.PodCondition {
	var unknown, incomplete []string
	for _, c := range pod.Spec.InitContainers {
		s, ok := findStatus(initStatuses, c.Name)
		if !ok {
			unknown = append(unknown, c.Name)
			continue
		}
		// A sidecar has done its part once started, another init
		// container once completed.
		if isSidecar(&c) && (s.Started == nil || !*s.Started) || !isSidecar(&c) && !s.Ready {
			incomplete = append(incomplete, c.Name)
		}
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		c := cond(v1.PodInitialized, true, "", "")
		c.Reason = condReasonPodCompleted
		return c
	}
	for _, s := range statuses {
		if s.State.Running != nil || s.State.Terminated != nil {
			return cond(v1.PodInitialized, true, "", "") // a regular container has started
		}
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", bracket(unknown)))
	}
	if len(incomplete) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with incomplete status: %s", bracket(incomplete)))
	}
	if len(msgs) > 0 {
		return cond(v1.PodInitialized, false, condReasonContainersNotInitialized, strings.Join(msgs, ", "))
	}
	return cond(v1.PodInitialized, true, "", "")
}

// containersReadyCondition: the sidecars and the regular containers are
// ready.
func containersReadyCondition(pod *v1.Pod, phase v1.PodPhase, initStatuses, statuses []v1.ContainerStatus, cond condFunc) v1.PodCondition {
	var unknown, unready []string
	check := func(list []v1.ContainerStatus, name string) {
		s, ok := findStatus(list, name)
		switch {
		case !ok:
			unknown = append(unknown, name)
		case !s.Ready:
			unready = append(unready, name)
		}
	}
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			check(initStatuses, pod.Spec.InitContainers[i].Name)
		}
	}
	for _, c := range pod.Spec.Containers {
		check(statuses, c.Name)
	}
	if phase == v1.PodSucceeded && len(unknown) == 0 {
		return cond(v1.ContainersReady, false, condReasonPodCompleted, "")
	}
	if phase == v1.PodFailed {
		return cond(v1.ContainersReady, false, condReasonPodFailed, "")
	}
	var msgs []string
	if len(unknown) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unknown status: %s", bracket(unknown)))
	}
	if len(unready) > 0 {
		msgs = append(msgs, fmt.Sprintf("containers with unready status: %s", bracket(unready)))
	}
	if len(msgs) > 0 {
		return cond(v1.ContainersReady, false, condReasonContainersNotReady, strings.Join(msgs, ", "))
	}
	return cond(v1.ContainersReady, true, "", "")
}

func readinessGates(pod *v1.Pod, others []v1.PodCondition, cond condFunc) v1.PodCondition {
	var msgs []string
	for _, g := range pod.Spec.ReadinessGates {
		var found *v1.PodCondition
		for i := range others {
			if others[i].Type == g.ConditionType {
				found = &others[i]
			}
		}
		switch {
		case found == nil:
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", string(g.ConditionType)))
		case found.Status != v1.ConditionTrue:
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", string(g.ConditionType), found.Status))
		}
	}
	if len(msgs) > 0 {
		return cond(v1.PodReady, false, condReasonReadinessGatesNotReady, strings.Join(msgs, ", "))
	}
	return cond(v1.PodReady, true, "", "")
}

// bracket renders names as fmt's %s of a []string does: [a b].
func bracket(names []string) string { return "[" + strings.Join(names, " ") + "]" }

// ownedByAgent lists the condition types the agent computes; the others on
// a pod belong to someone else and are kept.
func ownedByAgent(t v1.PodConditionType) bool {
	switch t {
	case v1.PodReadyToStartContainers, v1.PodInitialized, v1.PodReady, v1.ContainersReady, v1.PodScheduled,
		v1.PodResizePending, v1.PodResizeInProgress:
		return true
	}
	return false
}

// keepTransitionTimes carries each condition's last transition time over
// from old when its status did not change, and sets now otherwise.
func keepTransitionTimes(conds, old []v1.PodCondition, now metav1.Time) {
	for i := range conds {
		conds[i].LastTransitionTime = now
		for _, o := range old {
			if o.Type == conds[i].Type && o.Status == conds[i].Status && !o.LastTransitionTime.IsZero() {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
}
