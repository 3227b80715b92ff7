package pods

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// Shorthands for what runs, by container name.
var (
	none      = containerState{}
	created   = containerState{exists: true}
	runs      = containerState{exists: true, running: true, started: true}
	starting  = containerState{exists: true, running: true} // startup probe pending
	succeeded = containerState{exists: true, exited: true}
	failed    = containerState{exists: true, exited: true, exitCode: 1}
	unhealthy = containerState{exists: true, running: true, started: true, kill: "failed liveness probe"}
)

// sidecarPod: init containers proxy (a sidecar), setup, log (a sidecar);
// one app container.
func sidecarPod(policy v1.RestartPolicy) *v1.Pod {
	always := v1.ContainerRestartPolicyAlways
	return &v1.Pod{Spec: v1.PodSpec{
		RestartPolicy: policy,
		InitContainers: []v1.Container{
			{Name: "proxy", RestartPolicy: &always},
			{Name: "setup"},
			{Name: "log", RestartPolicy: &always},
		},
		Containers: []v1.Container{{Name: "app"}},
	}}
}

func describePlan(p podPlan) string {
	var parts []string
	for _, a := range p.kill {
		parts = append(parts, fmt.Sprintf("kill %s (restart %v)", a.c.Name, a.restart))
	}
	for _, a := range p.start {
		parts = append(parts, "start "+a.c.Name)
	}
	if p.stopAll {
		parts = append(parts, "stop all")
	}
	if p.initialized {
		parts = append(parts, "initialized")
	}
	return strings.Join(parts, ", ")
}

func TestPlanPod(t *testing.T) {
	cases := []struct {
		name   string
		pod    *v1.Pod
		states map[string]containerState
		want   string
	}{
		{"first sidecar starts first", sidecarPod(v1.RestartPolicyNever), nil, "start proxy"},
		{"next init waits for the sidecar's startup probe", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": starting}, ""},
		{"next init starts once the sidecar started", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs}, "start setup"},
		{"a running init container blocks the next", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": runs}, ""},
		{"the last init container is a sidecar", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": succeeded}, "start log"},
		{"initialized once the last sidecar started: the app starts", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs}, "start app, initialized"},
		{"an exited sidecar restarts during init, whatever the policy", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": failed, "setup": runs}, "start proxy"},
		{"an exited sidecar restarts after init", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": succeeded, "setup": succeeded, "log": runs, "app": runs}, "start proxy, initialized"},
		{"a sidecar whose container is gone restarts after init", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": none, "setup": none, "log": runs, "app": runs}, "start proxy, initialized"},
		{"a sidecar failing its liveness probe is killed and restarted", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": unhealthy, "setup": succeeded, "log": runs, "app": runs}, "kill proxy (restart true), initialized"},
		{"a failed init container fails a Never pod", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": failed}, ""},
		{"a failed init container restarts in an OnFailure pod", sidecarPod(v1.RestartPolicyOnFailure),
			map[string]containerState{"proxy": runs, "setup": failed}, "start setup"},
		{"a created but never started init container is replaced", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": created}, "start setup"},
		{"the app done in a Never pod: the sidecars stop", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": failed}, "stop all, initialized"},
		{"the app succeeded in an OnFailure pod: the sidecars stop", sidecarPod(v1.RestartPolicyOnFailure),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": succeeded}, "stop all, initialized"},
		{"the app failed in an OnFailure pod: it restarts", sidecarPod(v1.RestartPolicyOnFailure),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": failed}, "start app, initialized"},
		{"the app exited in an Always pod: it restarts", sidecarPod(v1.RestartPolicyAlways),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": succeeded}, "start app, initialized"},
		{"an unhealthy app in a Never pod is killed, not restarted", sidecarPod(v1.RestartPolicyNever),
			map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": unhealthy}, "kill app (restart false), initialized"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := describePlan(planPod(tc.pod, func(c *v1.Container) containerState { return tc.states[c.Name] }))
			if got != tc.want {
				t.Errorf("plan %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPlanPodEphemeral(t *testing.T) {
	pod := sidecarPod(v1.RestartPolicyNever)
	pod.Spec.InitContainers = nil
	pod.Spec.EphemeralContainers = []v1.EphemeralContainer{
		{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "new"}},
		{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "done"}},
		{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "half"}},
		{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debugging"}},
	}
	states := map[string]containerState{"app": runs, "done": failed, "half": created, "debugging": runs}
	got := describePlan(planPod(pod, func(c *v1.Container) containerState { return states[c.Name] }))
	// Started once (a created one replaced); never restarted.
	if want := "start new, start half, initialized"; got != want {
		t.Errorf("plan %q, want %q", got, want)
	}
	// Ephemeral containers start while init containers still run.
	pod = sidecarPod(v1.RestartPolicyNever)
	pod.Spec.EphemeralContainers = []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "new"}}}
	states = map[string]containerState{"proxy": runs, "setup": runs}
	got = describePlan(planPod(pod, func(c *v1.Container) containerState { return states[c.Name] }))
	if want := "start new"; got != want {
		t.Errorf("plan during init %q, want %q", got, want)
	}
	// Once the pod is done they do not start.
	states = map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs, "app": succeeded}
	got = describePlan(planPod(pod, func(c *v1.Container) containerState { return states[c.Name] }))
	if want := "stop all, initialized"; got != want {
		t.Errorf("plan of a completed pod %q, want %q", got, want)
	}
}

func TestStopOrder(t *testing.T) {
	pod := sidecarPod(v1.RestartPolicyNever)
	pod.Spec.InitContainers = append(pod.Spec.InitContainers, pod.Spec.InitContainers[0])
	pod.Spec.InitContainers[3].Name = "metrics"
	pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: "worker"})
	cases := []struct {
		running []string
		want    map[string][]string
	}{
		{[]string{"proxy", "log", "metrics", "app", "worker"}, map[string][]string{
			"metrics": {"app", "worker"},
			"log":     {"app", "worker", "metrics"},
			"proxy":   {"app", "worker", "metrics", "log"},
		}},
		// Stopped ones are not waited for.
		{[]string{"proxy", "metrics", "app"}, map[string][]string{
			"metrics": {"app"},
			"proxy":   {"app", "metrics"},
		}},
		{[]string{"app", "worker"}, map[string][]string{}},
	}
	for _, tc := range cases {
		running := map[string]string{}
		for _, n := range tc.running {
			running[n] = "id-" + n
		}
		got := stopOrder(pod, running)
		if len(got) != len(tc.want) {
			t.Errorf("running %v: order %v, want %v", tc.running, got, tc.want)
			continue
		}
		for name, want := range tc.want {
			if !slices.Equal(got[name], want) {
				t.Errorf("running %v: %s waits for %v, want %v", tc.running, name, got[name], want)
			}
		}
	}
	if stopOrder(nil, map[string]string{"x": "y"}) != nil {
		t.Error("a pod gone from the API has no order")
	}
}

// withPolicy gives the container called name of pod a restartPolicy and
// restartPolicyRules (ContainerRestartRules).
func withPolicy(pod *v1.Pod, name string, policy v1.ContainerRestartPolicy, rules ...v1.ContainerRestartRule) *v1.Pod {
	for _, list := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if list[i].Name == name {
				list[i].RestartPolicy = &policy
				list[i].RestartPolicyRules = rules
			}
		}
	}
	return pod
}

func restartOn(op v1.ContainerRestartRuleOnExitCodesOperator, codes ...int32) v1.ContainerRestartRule {
	return v1.ContainerRestartRule{Action: v1.ContainerRestartRuleActionRestart,
		ExitCodes: &v1.ContainerRestartRuleOnExitCodes{Operator: op, Values: codes}}
}

func TestPlanPodContainerRestartRules(t *testing.T) {
	exited := func(code int32) containerState { return containerState{exists: true, exited: true, exitCode: code} }
	initDone := map[string]containerState{"proxy": runs, "setup": succeeded, "log": runs}
	with := func(app containerState) map[string]containerState {
		m := maps.Clone(initDone)
		m["app"] = app
		return m
	}
	cases := []struct {
		name   string
		pod    *v1.Pod
		states map[string]containerState
		want   string
	}{
		{"container OnFailure in a Never pod: a failure restarts it",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyOnFailure), with(failed), "start app, initialized"},
		{"container OnFailure in a Never pod: success ends the pod",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyOnFailure), with(succeeded), "stop all, initialized"},
		{"container Never in an Always pod: exit ends it",
			withPolicy(sidecarPod(v1.RestartPolicyAlways), "app", v1.ContainerRestartPolicyNever), with(succeeded), "stop all, initialized"},
		{"container Always in a Never pod: success restarts it",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyAlways), with(succeeded), "start app, initialized"},
		{"a rule In matching the exit code restarts a Never container",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyNever, restartOn(v1.ContainerRestartRuleOnExitCodesOpIn, 42)), with(exited(42)), "start app, initialized"},
		{"a rule In not matching falls back to the container's Never",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyNever, restartOn(v1.ContainerRestartRuleOnExitCodesOpIn, 42)), with(exited(1)), "stop all, initialized"},
		{"a rule NotIn restarts on any other code",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyNever, restartOn(v1.ContainerRestartRuleOnExitCodesOpNotIn, 0)), with(exited(3)), "start app, initialized"},
		{"a rule NotIn does not restart on its codes",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyNever, restartOn(v1.ContainerRestartRuleOnExitCodesOpNotIn, 0)), with(succeeded), "stop all, initialized"},
		{"an unhealthy container OnFailure in a Never pod is killed and restarted",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "app", v1.ContainerRestartPolicyOnFailure), with(unhealthy), "kill app (restart true), initialized"},
		{"an init container OnFailure in a Never pod restarts on failure",
			withPolicy(sidecarPod(v1.RestartPolicyNever), "setup", v1.ContainerRestartPolicyOnFailure), map[string]containerState{"proxy": runs, "setup": failed}, "start setup"},
		{"an init container Never in an OnFailure pod fails it",
			withPolicy(sidecarPod(v1.RestartPolicyOnFailure), "setup", v1.ContainerRestartPolicyNever), map[string]containerState{"proxy": runs, "setup": failed}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := describePlan(planPod(tc.pod, func(c *v1.Container) containerState { return tc.states[c.Name] }))
			if got != tc.want {
				t.Errorf("plan %q, want %q", got, tc.want)
			}
		})
	}
}
