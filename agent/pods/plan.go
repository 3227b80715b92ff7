package pods

import (
	v1 "k8s.io/api/core/v1"
)

// containerKind is the role of a container in its pod: it decides when the
// container starts, whether it restarts and how its status is reported.
type containerKind int

const (
	kindRegular containerKind = iota
	// kindInit runs to completion, in order, before the regular containers.
	kindInit
	// kindSidecar is an init container with restartPolicy Always: it starts
	// in order with the init containers, keeps running beside the regular
	// containers, is restarted whenever it exits and stops after them.
	kindSidecar
	// kindEphemeral is added to a running pod (kubectl debug) and never
	// restarted.
	kindEphemeral
)

// isSidecar: an init container with restartPolicy Always.
func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

// containerState is what the planner knows of a container's newest attempt.
type containerState struct {
	exists   bool // an attempt was created
	running  bool
	exited   bool
	exitCode int32
	// started is the startup probe's verdict (true without one) and kill
	// says why probes want the running attempt killed ("" if they do not).
	started bool
	kill    string
	// resizeRestart: the attempt was killed for a resize that needs it
	// restarted, which it is whatever the restart policy.
	resizeRestart bool
}

// containerAction is one container to start or kill.
type containerAction struct {
	c    *v1.Container
	kind containerKind
	// why a kill happens (a probe failed) and whether the container starts
	// again afterwards.
	why     string
	restart bool
}

// podPlan is the next step for a pod that should run, computed from what
// runs, as kubelet's computePodActions does.
type podPlan struct {
	start []containerAction
	kill  []containerAction
	// stopAll: the regular containers are done for good (restart policy
	// Never or OnFailure), so what still runs (sidecars, ephemeral
	// containers) stops and nothing starts: the pod completes.
	stopAll bool
	// initialized: every init container completed (or, for a sidecar,
	// started) and the regular containers may run.
	initialized bool
}

// planPod decides which containers start and which are killed.
func planPod(pod *v1.Pod, state func(c *v1.Container) containerState) podPlan {
	var p podPlan
	mainStarted := false
	for i := range pod.Spec.Containers {
		if state(&pod.Spec.Containers[i]).exists {
			mainStarted = true
		}
	}
	if mainStarted && mainDone(pod, state) {
		return podPlan{stopAll: true, initialized: true}
	}
	// Ephemeral containers start even while the pod initializes, once.
	for i := range pod.Spec.EphemeralContainers {
		c := (*v1.Container)(&pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		if st := state(c); !st.exists || !st.running && !st.exited {
			p.start = append(p.start, containerAction{c: c, kind: kindEphemeral})
		}
	}
	p.initialized = p.planInit(pod, state, mainStarted)
	if !p.initialized {
		return p
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st := state(c)
		switch {
		case st.running && st.kill != "":
			p.kill = append(p.kill, containerAction{c: c, kind: kindRegular, why: st.kill, restart: restartsAfterKill(&pod.Spec, c)})
		case st.running:
		case st.exited && !st.resizeRestart && !shouldRestart(&pod.Spec, c, st.exitCode):
		default:
			p.start = append(p.start, containerAction{c: c, kind: kindRegular})
		}
	}
	return p
}

// mainDone: every regular container exited and none restarts by the
// restart policy.
func mainDone(pod *v1.Pod, state func(c *v1.Container) containerState) bool {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		st := state(c)
		if !st.exited || st.resizeRestart || shouldRestart(&pod.Spec, c, st.exitCode) {
			return false
		}
	}
	return len(pod.Spec.Containers) > 0
}

// planInit plans the init containers and says whether the pod is
// initialized. The frontier is the last init container that was ever
// created: those before it have been passed (only their sidecars still
// matter, kept running); the frontier must complete (or, a sidecar, be
// started) before the next one starts. Once a regular container exists the
// pod is initialized for good and only sidecars are kept.
func (p *podPlan) planInit(pod *v1.Pod, state func(c *v1.Container) containerState, mainStarted bool) bool {
	inits := pod.Spec.InitContainers
	frontier := len(inits)
	if !mainStarted {
		frontier = -1
		for i := range inits {
			if state(&inits[i]).exists {
				frontier = i
			}
		}
	}
	for i := 0; i < frontier && i < len(inits); i++ {
		if isSidecar(&inits[i]) {
			p.keepSidecar(&inits[i], state(&inits[i]))
		}
	}
	if mainStarted || len(inits) == 0 {
		return true
	}
	if frontier < 0 {
		p.startInit(&inits[0])
		return false
	}
	c := &inits[frontier]
	st := state(c)
	passed := false
	if isSidecar(c) {
		passed = st.running && st.started
		p.keepSidecar(c, st)
	} else {
		switch {
		case st.exited && st.exitCode == 0:
			passed = true
		case st.running:
		case st.exited && !shouldRestart(&pod.Spec, c, st.exitCode):
			// Failed for good: the pod fails.
		default:
			p.start = append(p.start, containerAction{c: c, kind: kindInit})
		}
	}
	if !passed {
		return false
	}
	if frontier == len(inits)-1 {
		return true
	}
	p.startInit(&inits[frontier+1])
	return false
}

func (p *podPlan) startInit(c *v1.Container) {
	kind := kindInit
	if isSidecar(c) {
		kind = kindSidecar
	}
	p.start = append(p.start, containerAction{c: c, kind: kind})
}

// keepSidecar restarts a sidecar that does not run, whatever the pod's
// restart policy, and kills one its probes condemn.
func (p *podPlan) keepSidecar(c *v1.Container, st containerState) {
	switch {
	case st.running && st.kill != "":
		p.kill = append(p.kill, containerAction{c: c, kind: kindSidecar, why: st.kill, restart: true})
	case st.running:
	default:
		p.start = append(p.start, containerAction{c: c, kind: kindSidecar})
	}
}
