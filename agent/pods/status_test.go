package pods

import (
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func running() v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}
}

func terminated(code int32) v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}}
}

func waitingAfter(code int32) v1.ContainerStatus {
	return v1.ContainerStatus{
		State:                v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff}},
		LastTerminationState: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}},
	}
}

func waiting() v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reasonContainerCreating}}}
}

func named(s v1.ContainerStatus, name string) v1.ContainerStatus { s.Name = name; return s }

func TestPodPhase(t *testing.T) {
	spec := func(policy v1.RestartPolicy, inits int) *v1.PodSpec {
		s := &v1.PodSpec{RestartPolicy: policy, Containers: []v1.Container{{Name: "a"}, {Name: "b"}}}
		for i := 0; i < inits; i++ {
			s.InitContainers = append(s.InitContainers, v1.Container{Name: "init" + string(rune('0'+i))})
		}
		return s
	}
	cases := []struct {
		name     string
		spec     *v1.PodSpec
		init     []v1.ContainerStatus
		apps     []v1.ContainerStatus
		terminal bool
		want     v1.PodPhase
	}{
		{"nothing started", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(waiting(), "a"), named(waiting(), "b")}, false, v1.PodPending},
		{"one running one waiting", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(running(), "a"), named(waiting(), "b")}, false, v1.PodPending},
		{"all running", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(running(), "a"), named(running(), "b")}, false, v1.PodRunning},
		{"running and crash-looping", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(running(), "a"), named(waitingAfter(1), "b")}, false, v1.PodRunning},
		{"all exited, restart always", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(1), "b")}, false, v1.PodRunning},
		{"all succeeded, never", spec(v1.RestartPolicyNever, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(0), "b")}, false, v1.PodSucceeded},
		{"one failed, never", spec(v1.RestartPolicyNever, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(2), "b")}, false, v1.PodFailed},
		{"one failed, on failure", spec(v1.RestartPolicyOnFailure, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(2), "b")}, false, v1.PodRunning},
		{"all succeeded, on failure", spec(v1.RestartPolicyOnFailure, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(0), "b")}, false, v1.PodSucceeded},
		{"terminal with a failure", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(143), "b")}, true, v1.PodFailed},
		{"terminal all succeeded", spec(v1.RestartPolicyAlways, 0), nil, []v1.ContainerStatus{named(terminated(0), "a"), named(terminated(0), "b")}, true, v1.PodSucceeded},
		{"init running", spec(v1.RestartPolicyAlways, 1), []v1.ContainerStatus{named(running(), "init0")}, []v1.ContainerStatus{named(waiting(), "a"), named(waiting(), "b")}, false, v1.PodPending},
		{"init failed, never", spec(v1.RestartPolicyNever, 1), []v1.ContainerStatus{named(terminated(1), "init0")}, []v1.ContainerStatus{named(waiting(), "a"), named(waiting(), "b")}, false, v1.PodFailed},
		{"init crash-looping, always", spec(v1.RestartPolicyAlways, 1), []v1.ContainerStatus{named(waitingAfter(1), "init0")}, []v1.ContainerStatus{named(waiting(), "a"), named(waiting(), "b")}, false, v1.PodPending},
		{"inits done, apps running", spec(v1.RestartPolicyAlways, 2), []v1.ContainerStatus{named(terminated(0), "init0"), named(terminated(0), "init1")}, []v1.ContainerStatus{named(running(), "a"), named(running(), "b")}, false, v1.PodRunning},
	}
	for _, tc := range cases {
		if got := podPhase(tc.spec, tc.init, tc.apps, tc.terminal, false); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

func condition(conds []v1.PodCondition, t v1.PodConditionType) v1.PodCondition {
	for _, c := range conds {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{}
}

func TestPodConditions(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{
		InitContainers: []v1.Container{{Name: "setup"}},
		Containers:     []v1.Container{{Name: "web"}, {Name: "side"}},
	}}
	ready := func(s v1.ContainerStatus) v1.ContainerStatus { s.Ready = true; return s }

	// Initializing: the init container runs.
	conds := podConditions(pod, v1.PodPending, []v1.ContainerStatus{named(running(), "setup")},
		[]v1.ContainerStatus{named(waiting(), "web"), named(waiting(), "side")}, true, nil)
	if c := condition(conds, v1.PodInitialized); c.Status != v1.ConditionFalse || c.Reason != "ContainersNotInitialized" || c.Message != "containers with incomplete status: [setup]" {
		t.Errorf("Initialized while an init container runs: %+v", c)
	}
	if c := condition(conds, v1.PodReady); c.Status != v1.ConditionFalse || c.Reason != "ContainersNotReady" || c.Message != "containers with unready status: [web side]" {
		t.Errorf("Ready while initializing: %+v", c)
	}
	// Running, one container not ready.
	inits := []v1.ContainerStatus{ready(named(terminated(0), "setup"))}
	conds = podConditions(pod, v1.PodRunning, inits, []v1.ContainerStatus{ready(named(running(), "web")), named(running(), "side")}, true, nil)
	if c := condition(conds, v1.PodInitialized); c.Status != v1.ConditionTrue {
		t.Errorf("Initialized after the init container: %+v", c)
	}
	if c := condition(conds, v1.ContainersReady); c.Status != v1.ConditionFalse || c.Message != "containers with unready status: [side]" {
		t.Errorf("ContainersReady with one unready: %+v", c)
	}
	// All ready, but a readiness gate is missing, then false, then true.
	apps := []v1.ContainerStatus{ready(named(running(), "web")), ready(named(running(), "side"))}
	gated := pod.DeepCopy()
	gated.Spec.ReadinessGates = []v1.PodReadinessGate{{ConditionType: "example.com/lb"}}
	conds = podConditions(gated, v1.PodRunning, inits, apps, true, nil)
	if c := condition(conds, v1.PodReady); c.Status != v1.ConditionFalse || c.Reason != "ReadinessGatesNotReady" ||
		c.Message != `corresponding condition of pod readiness gate "example.com/lb" does not exist.` {
		t.Errorf("Ready with a missing gate: %+v", c)
	}
	if c := condition(conds, v1.ContainersReady); c.Status != v1.ConditionTrue {
		t.Errorf("ContainersReady ignores gates: %+v", c)
	}
	gate := v1.PodCondition{Type: "example.com/lb", Status: v1.ConditionFalse}
	conds = podConditions(gated, v1.PodRunning, inits, apps, true, []v1.PodCondition{gate})
	if c := condition(conds, v1.PodReady); c.Status != v1.ConditionFalse || !strings.Contains(c.Message, `is not "True", but False`) {
		t.Errorf("Ready with a false gate: %+v", c)
	}
	gate.Status = v1.ConditionTrue
	conds = podConditions(gated, v1.PodRunning, inits, apps, true, []v1.PodCondition{gate})
	if c := condition(conds, v1.PodReady); c.Status != v1.ConditionTrue {
		t.Errorf("Ready with a true gate: %+v", c)
	}
	// Completed.
	done := []v1.ContainerStatus{named(terminated(0), "web"), named(terminated(0), "side")}
	conds = podConditions(pod, v1.PodSucceeded, inits, done, false, nil)
	for _, want := range []struct {
		t      v1.PodConditionType
		status v1.ConditionStatus
		reason string
	}{
		{v1.PodReadyToStartContainers, v1.ConditionFalse, ""},
		{v1.PodInitialized, v1.ConditionTrue, "PodCompleted"},
		{v1.PodReady, v1.ConditionFalse, "PodCompleted"},
		{v1.ContainersReady, v1.ConditionFalse, "PodCompleted"},
		{v1.PodScheduled, v1.ConditionTrue, ""},
	} {
		if c := condition(conds, want.t); c.Status != want.status || c.Reason != want.reason {
			t.Errorf("succeeded pod: %s = %+v, want %s %q", want.t, c, want.status, want.reason)
		}
	}
	order := []v1.PodConditionType{}
	for _, c := range conds {
		order = append(order, c.Type)
	}
	if got := strings.Join(conditionNames(order), ","); got != "PodReadyToStartContainers,Initialized,Ready,ContainersReady,PodScheduled" {
		t.Errorf("condition order %s, want kubelet's", got)
	}
}

func conditionNames(ts []v1.PodConditionType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

func TestContainerStatus(t *testing.T) {
	c := &v1.Container{Name: "app", Image: "busybox"}
	t0 := metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	prev := &attempt{id: "p", number: 0, exited: true, exitCode: 1, reason: reasonError, started: t0, finished: t0}
	cur := &attempt{id: "c", number: 1, exited: true, exitCode: 137, reason: reasonOOMKilled, image: "docker.io/library/busybox:latest", imageRef: "docker.io/library/busybox@sha256:x"}
	crash := &v1.ContainerStateWaiting{Reason: reasonCrashLoopBackOff, Message: "back-off 10s"}

	// Waiting to be restarted: the exit is the last state.
	s := containerStatus(c, observed{current: cur, previous: prev, waiting: crash}, reasonContainerCreating, kindRegular)
	if s.State.Waiting != crash || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.Reason != reasonOOMKilled || s.RestartCount != 1 {
		t.Errorf("crash-looping status %+v", s)
	}
	if s.ContainerID != "containerd://c" || s.ImageID != "docker.io/library/busybox@sha256:x" || s.Image != "docker.io/library/busybox:latest" {
		t.Errorf("ids %q %q %q", s.ContainerID, s.ImageID, s.Image)
	}
	// Not restarted: terminated, with the previous attempt as last state.
	s = containerStatus(c, observed{current: cur, previous: prev}, reasonContainerCreating, kindRegular)
	if s.State.Terminated == nil || s.State.Terminated.ExitCode != 137 || s.LastTerminationState.Terminated.ExitCode != 1 {
		t.Errorf("terminated status %+v", s)
	}
	// Running and ready.
	run := &attempt{id: "r", number: 2, running: true, started: t0}
	s = containerStatus(c, observed{current: run, ready: true, started: true}, reasonContainerCreating, kindRegular)
	if s.State.Running == nil || !s.Ready || s.Started == nil || !*s.Started {
		t.Errorf("running status %+v", s)
	}
	// Never run: the default waiting reason, or why it waits.
	s = containerStatus(c, observed{}, reasonPodInitializing, kindRegular)
	if s.State.Waiting == nil || s.State.Waiting.Reason != reasonPodInitializing || s.Ready {
		t.Errorf("never-run status %+v", s)
	}
	pull := &v1.ContainerStateWaiting{Reason: reasonImagePullBackOff}
	s = containerStatus(c, observed{waiting: pull}, reasonContainerCreating, kindRegular)
	if s.State.Waiting != pull {
		t.Errorf("image back-off status %+v", s)
	}
	// A completed init container is ready.
	ok := &attempt{id: "i", exited: true, exitCode: 0, reason: reasonCompleted}
	if s := containerStatus(c, observed{current: ok}, "", kindInit); !s.Ready {
		t.Errorf("completed init container not ready: %+v", s)
	}
	// An exited sidecar is not ready; an ephemeral container is neither
	// started nor ready, running or not.
	if s := containerStatus(c, observed{current: ok}, "", kindSidecar); s.Ready {
		t.Errorf("exited sidecar ready: %+v", s)
	}
	if s := containerStatus(c, observed{current: run, ready: true, started: true}, "", kindEphemeral); s.Ready || s.Started != nil || s.State.Running == nil {
		t.Errorf("ephemeral container status %+v, want running, Started unset, not ready", s)
	}
}

func TestKeepTransitionTimes(t *testing.T) {
	then := metav1.NewTime(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))
	now := metav1.NewTime(then.Add(time.Hour))
	old := []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue, LastTransitionTime: then}, {Type: v1.ContainersReady, Status: v1.ConditionTrue, LastTransitionTime: then}}
	conds := []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}, {Type: v1.ContainersReady, Status: v1.ConditionFalse}}
	keepTransitionTimes(conds, old, now)
	if !conds[0].LastTransitionTime.Equal(&then) || !conds[1].LastTransitionTime.Equal(&now) {
		t.Errorf("transition times %v %v", conds[0].LastTransitionTime, conds[1].LastTransitionTime)
	}
}

func startedRunning(started bool) v1.ContainerStatus {
	s := running()
	s.Started = &started
	return s
}

// TestPodPhaseSidecars: sidecars keep a pod Running but never decide its
// outcome; one not started yet keeps an uninitialized pod Pending.
func TestPodPhaseSidecars(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	spec := func(policy v1.RestartPolicy) *v1.PodSpec {
		return &v1.PodSpec{RestartPolicy: policy,
			InitContainers: []v1.Container{{Name: "proxy", RestartPolicy: &always}, {Name: "setup"}},
			Containers:     []v1.Container{{Name: "app"}}}
	}
	app := func(s v1.ContainerStatus) []v1.ContainerStatus { return []v1.ContainerStatus{named(s, "app")} }
	cases := []struct {
		name        string
		policy      v1.RestartPolicy
		init        []v1.ContainerStatus
		apps        []v1.ContainerStatus
		initialized bool
		want        v1.PodPhase
	}{
		{"sidecar starting", v1.RestartPolicyNever, []v1.ContainerStatus{named(startedRunning(false), "proxy"), named(waiting(), "setup")}, app(waiting()), false, v1.PodPending},
		{"sidecar started, init runs", v1.RestartPolicyNever, []v1.ContainerStatus{named(startedRunning(true), "proxy"), named(running(), "setup")}, app(waiting()), false, v1.PodPending},
		{"sidecar and app run", v1.RestartPolicyNever, []v1.ContainerStatus{named(startedRunning(true), "proxy"), named(terminated(0), "setup")}, app(running()), true, v1.PodRunning},
		{"app done, sidecar still runs", v1.RestartPolicyNever, []v1.ContainerStatus{named(startedRunning(true), "proxy"), named(terminated(0), "setup")}, app(terminated(0)), true, v1.PodRunning},
		{"app done, sidecar stopped", v1.RestartPolicyNever, []v1.ContainerStatus{named(terminated(143), "proxy"), named(terminated(0), "setup")}, app(terminated(0)), true, v1.PodSucceeded},
		{"app failed, sidecar stopped", v1.RestartPolicyNever, []v1.ContainerStatus{named(terminated(0), "proxy"), named(terminated(0), "setup")}, app(terminated(3)), true, v1.PodFailed},
		{"app done on failure, sidecar stopped", v1.RestartPolicyOnFailure, []v1.ContainerStatus{named(terminated(137), "proxy"), named(terminated(0), "setup")}, app(terminated(0)), true, v1.PodSucceeded},
		{"sidecar crash-looping after init", v1.RestartPolicyAlways, []v1.ContainerStatus{named(waitingAfter(1), "proxy"), named(terminated(0), "setup")}, app(running()), true, v1.PodRunning},
		{"sidecar restarting, not started, after init", v1.RestartPolicyAlways, []v1.ContainerStatus{named(startedRunning(false), "proxy"), named(terminated(0), "setup")}, app(running()), true, v1.PodRunning},
		{"sidecar never ran", v1.RestartPolicyAlways, []v1.ContainerStatus{named(waiting(), "proxy"), named(waiting(), "setup")}, app(waiting()), false, v1.PodPending},
		{"init failed, never", v1.RestartPolicyNever, []v1.ContainerStatus{named(startedRunning(true), "proxy"), named(terminated(1), "setup")}, app(waiting()), false, v1.PodFailed},
	}
	for _, tc := range cases {
		if got := podPhase(spec(tc.policy), tc.init, tc.apps, false, tc.initialized); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestPodConditionsSidecars: a sidecar counts as initialized once started
// and its readiness counts in ContainersReady.
func TestPodConditionsSidecars(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	pod := &v1.Pod{Spec: v1.PodSpec{
		InitContainers: []v1.Container{{Name: "proxy", RestartPolicy: &always}, {Name: "setup"}},
		Containers:     []v1.Container{{Name: "app"}},
	}}
	ready := func(s v1.ContainerStatus) v1.ContainerStatus { s.Ready = true; return s }
	// The sidecar runs but its startup probe has not passed.
	conds := podConditions(pod, v1.PodPending, []v1.ContainerStatus{named(startedRunning(false), "proxy"), named(waiting(), "setup")},
		[]v1.ContainerStatus{named(waiting(), "app")}, true, nil)
	if c := condition(conds, v1.PodInitialized); c.Status != v1.ConditionFalse || c.Message != "containers with incomplete status: [proxy setup]" {
		t.Errorf("Initialized before the sidecar started: %+v", c)
	}
	// Started but not ready: initialized, not ready.
	inits := []v1.ContainerStatus{named(startedRunning(true), "proxy"), ready(named(terminated(0), "setup"))}
	conds = podConditions(pod, v1.PodRunning, inits, []v1.ContainerStatus{ready(named(running(), "app"))}, true, nil)
	if c := condition(conds, v1.PodInitialized); c.Status != v1.ConditionTrue {
		t.Errorf("Initialized with the sidecar started: %+v", c)
	}
	if c := condition(conds, v1.ContainersReady); c.Status != v1.ConditionFalse || c.Message != "containers with unready status: [proxy]" {
		t.Errorf("ContainersReady with an unready sidecar: %+v", c)
	}
	inits[0] = ready(inits[0])
	conds = podConditions(pod, v1.PodRunning, inits, []v1.ContainerStatus{ready(named(running(), "app"))}, true, nil)
	if c := condition(conds, v1.PodReady); c.Status != v1.ConditionTrue {
		t.Errorf("Ready with sidecar and app ready: %+v", c)
	}
}

func TestPodPhaseContainerRestartRules(t *testing.T) {
	onFailure := v1.ContainerRestartPolicyOnFailure
	never := v1.ContainerRestartPolicyNever
	rule42 := []v1.ContainerRestartRule{{Action: v1.ContainerRestartRuleActionRestart,
		ExitCodes: &v1.ContainerRestartRuleOnExitCodes{Operator: v1.ContainerRestartRuleOnExitCodesOpIn, Values: []int32{42}}}}
	spec := func(pod v1.RestartPolicy, app *v1.ContainerRestartPolicy, rules []v1.ContainerRestartRule, init *v1.ContainerRestartPolicy) *v1.PodSpec {
		return &v1.PodSpec{RestartPolicy: pod,
			InitContainers: []v1.Container{{Name: "init0", RestartPolicy: init}},
			Containers:     []v1.Container{{Name: "a", RestartPolicy: app, RestartPolicyRules: rules}}}
	}
	initOK := []v1.ContainerStatus{named(terminated(0), "init0")}
	cases := []struct {
		name       string
		spec       *v1.PodSpec
		init, apps []v1.ContainerStatus
		want       v1.PodPhase
	}{
		{"Never pod, container OnFailure, failed: restarting", spec(v1.RestartPolicyNever, &onFailure, nil, nil), initOK, []v1.ContainerStatus{named(terminated(1), "a")}, v1.PodRunning},
		{"Never pod, container OnFailure, crash-looping: restarting", spec(v1.RestartPolicyNever, &onFailure, nil, nil), initOK, []v1.ContainerStatus{named(waitingAfter(1), "a")}, v1.PodRunning},
		{"Never pod, container OnFailure, succeeded", spec(v1.RestartPolicyNever, &onFailure, nil, nil), initOK, []v1.ContainerStatus{named(terminated(0), "a")}, v1.PodSucceeded},
		{"Always pod, container Never, failed", spec(v1.RestartPolicyAlways, &never, nil, nil), initOK, []v1.ContainerStatus{named(terminated(1), "a")}, v1.PodFailed},
		{"Never pod, rule on 42, exit 42: restarting", spec(v1.RestartPolicyNever, &never, rule42, nil), initOK, []v1.ContainerStatus{named(terminated(42), "a")}, v1.PodRunning},
		{"Never pod, rule on 42, exit 1", spec(v1.RestartPolicyNever, &never, rule42, nil), initOK, []v1.ContainerStatus{named(terminated(1), "a")}, v1.PodFailed},
		{"Never pod, init OnFailure failed: retried, pending", spec(v1.RestartPolicyNever, nil, nil, &onFailure), []v1.ContainerStatus{named(waitingAfter(1), "init0")}, []v1.ContainerStatus{named(waiting(), "a")}, v1.PodPending},
		{"OnFailure pod, init Never failed", spec(v1.RestartPolicyOnFailure, nil, nil, &never), []v1.ContainerStatus{named(terminated(1), "init0")}, []v1.ContainerStatus{named(waiting(), "a")}, v1.PodFailed},
	}
	for _, tc := range cases {
		if got := podPhase(tc.spec, tc.init, tc.apps, false, true); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}
