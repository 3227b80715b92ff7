package agent

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestAgentPodFeatures runs the pod features jobs and debugging lean on
// (active deadlines, native sidecars, ephemeral containers, in-place
// resize) against one server and one agent.
func TestAgentPodFeatures(t *testing.T) {
	c := startCluster(t)
	t.Run("ActiveDeadlineLowered", c.testActiveDeadlineLowered)
	t.Run("Sidecar", c.testSidecar)
	t.Run("SidecarJobCompletes", c.testSidecarJobCompletes)
	t.Run("ContainerRestartRules", c.testContainerRestartRules)
	t.Run("DebugEphemeralContainer", c.testDebugEphemeralContainer)
	t.Run("InPlaceResize", c.testInPlaceResize)
}

// testActiveDeadlineLowered: a running pod whose activeDeadlineSeconds is
// lowered below the time it has run fails with DeadlineExceeded, its
// container stopped, as kubelet reports it (the conformance spec "Pods
// should allow activeDeadlineSeconds to be updated").
func (c *cluster) testActiveDeadlineLowered(t *testing.T) {
	ns := c.namespace(t, "deadline")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: bounded
spec:
  nodeName: `+c.node+`
  activeDeadlineSeconds: 3600
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
`)
	c.waitPod(t, ns, "bounded", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	patch := `{"spec":{"activeDeadlineSeconds":5}}`
	if _, err := c.client.CoreV1().Pods(ns).Patch(context.Background(), "bounded", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("lowering activeDeadlineSeconds: %v", err)
	}
	p := c.waitPod(t, ns, "bounded", 2*time.Minute, "failed with DeadlineExceeded and its container stopped", func(p *v1.Pod) bool {
		s := p.Status.ContainerStatuses
		return p.Status.Phase == v1.PodFailed && len(s) == 1 && s[0].State.Terminated != nil
	})
	if p.Status.Reason != "DeadlineExceeded" || p.Status.Message != "Pod was active on the node longer than the specified deadline" {
		t.Errorf("reason %q message %q, want kubelet's DeadlineExceeded", p.Status.Reason, p.Status.Message)
	}
	if r := podCondition(p, v1.PodReady); r.Status != v1.ConditionFalse || r.Reason != "PodFailed" {
		t.Errorf("Ready condition %+v, want False PodFailed", r)
	}
	if s := p.Status.ContainerStatuses[0]; s.RestartCount != 0 {
		t.Errorf("the container was restarted: %+v", s)
	}
	c.expectEvent(t, ns, "bounded", "DeadlineExceeded", "longer than the specified deadline")
}

// sidecarStatus finds an init container's status.
func sidecarStatus(p *v1.Pod, name string) (v1.ContainerStatus, bool) {
	for _, s := range p.Status.InitContainerStatuses {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// testSidecar: an init container with restartPolicy Always starts before
// the app (which starts only once the sidecar's startup probe passed), keeps
// running beside it, counts in the pod's readiness and is restarted when it
// is killed, without touching the app.
func (c *cluster) testSidecar(t *testing.T) {
	ns := c.namespace(t, "sidecar")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: with-sidecar
spec:
  nodeName: `+c.node+`
  terminationGracePeriodSeconds: 5
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: proxy
    image: `+c.busybox+`
    restartPolicy: Always
    command: ['sh', '-c', 'trap "echo proxy got TERM; exit 143" TERM; sleep 2; touch /work/proxy-up; while true; do sleep 1; done']
    volumeMounts: [{name: work, mountPath: /work}]
    startupProbe:
      exec:
        command: ['cat', '/work/proxy-up']
      periodSeconds: 1
      failureThreshold: 30
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'if [ -f /work/proxy-up ]; then echo proxy was up; else echo proxy was not up; fi; exec sleep 3600']
    volumeMounts: [{name: work, mountPath: /work}]
`)
	p := c.waitPod(t, ns, "with-sidecar", 3*time.Minute, "running and ready beside its sidecar", func(p *v1.Pod) bool {
		s, ok := sidecarStatus(p, "proxy")
		return p.Status.Phase == v1.PodRunning && podCondition(p, v1.PodReady).Status == v1.ConditionTrue &&
			ok && s.State.Running != nil && s.Ready && s.Started != nil && *s.Started
	})
	if r := podCondition(p, v1.PodInitialized); r.Status != v1.ConditionTrue {
		t.Errorf("Initialized condition %+v", r)
	}
	harness.Eventually(t, time.Minute, "the app saw the sidecar up when it started", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "with-sidecar", "-c", "app")
		return r.ExitCode == 0 && r.Stdout == "proxy was up\n", r.String()
	})
	out := c.server.MustKubectl(t, "get", "pod", "-n", ns, "with-sidecar", "--no-headers")
	if f := strings.Fields(out); len(f) < 3 || f[1] != "2/2" || f[2] != "Running" {
		t.Errorf("kubectl get pod: %q, want READY 2/2 (the sidecar counts) Running", out)
	}
	// Killed (its trap makes it exit 143), the sidecar comes back; the app
	// keeps running untouched.
	r := c.server.Kubectl(t, "exec", "-n", ns, "with-sidecar", "-c", "proxy", "--", "kill", "-TERM", "1")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl exec kill: %s", r)
	}
	p = c.waitPod(t, ns, "with-sidecar", 2*time.Minute, "the sidecar restarted", func(p *v1.Pod) bool {
		s, _ := sidecarStatus(p, "proxy")
		return s.RestartCount == 1 && s.State.Running != nil
	})
	s, _ := sidecarStatus(p, "proxy")
	if last := s.LastTerminationState.Terminated; last == nil || last.ExitCode != 143 {
		t.Errorf("sidecar last state %+v, want terminated with 143", s.LastTerminationState)
	}
	if app := p.Status.ContainerStatuses[0]; app.RestartCount != 0 || app.State.Running == nil {
		t.Errorf("app status %+v: want still running, never restarted", app)
	}
	if p.Status.Phase != v1.PodRunning {
		t.Errorf("phase %s while the sidecar restarts, want Running", p.Status.Phase)
	}
}

// testSidecarJobCompletes: in a pod with restartPolicy Never (a Job's), the
// app exiting 0 completes the pod: the sidecar gets its stop signal and the
// pod is Succeeded, the sidecar's own exit code notwithstanding.
func (c *cluster) testSidecarJobCompletes(t *testing.T) {
	ns := c.namespace(t, "sidecarjob")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: job-like
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  terminationGracePeriodSeconds: 20
  initContainers:
  - name: logshipper
    image: `+c.busybox+`
    restartPolicy: Always
    command: ['sh', '-c', 'trap "echo shipper stopping; exit 1" TERM; echo shipper up; while true; do sleep 1; done']
  containers:
  - name: work
    image: `+c.busybox+`
    command: ['sh', '-c', 'sleep 2; echo work done']
`)
	p := c.waitPod(t, ns, "job-like", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	s, ok := sidecarStatus(p, "logshipper")
	if !ok || s.State.Terminated == nil || s.Ready {
		t.Errorf("sidecar status %+v: want terminated, not ready", s)
	}
	if s.RestartCount != 0 {
		t.Errorf("the sidecar was restarted %d times after the app completed", s.RestartCount)
	}
	if w := p.Status.ContainerStatuses[0]; w.State.Terminated == nil || w.State.Terminated.ExitCode != 0 || w.State.Terminated.Reason != "Completed" {
		t.Errorf("app status %+v, want Completed", w.State)
	}
	// Its trap ran: it was stopped with its stop signal, not killed.
	harness.Eventually(t, time.Minute, "the sidecar's log shows its graceful stop", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "job-like", "-c", "logshipper")
		return r.ExitCode == 0 && r.Stdout == "shipper up\nshipper stopping\n", r.String()
	})
	out := c.server.MustKubectl(t, "get", "pod", "-n", ns, "job-like", "--no-headers")
	if f := strings.Fields(out); len(f) < 3 || f[2] != "Completed" {
		t.Errorf("kubectl get pod: %q, want STATUS Completed", out)
	}
}

// testContainerRestartRules: in a pod with restartPolicy Never, a
// container whose rule restarts it on exit code 42 runs again after exiting
// 42 (the pod stays Running meanwhile) and the pod succeeds when it exits
// 0; in a second such pod, whose container exits 3 on its second run, no
// rule matches, the container's own Never holds and the pod fails.
func (c *cluster) testContainerRestartRules(t *testing.T) {
	ns := c.namespace(t, "restartrules")
	pod := func(name, secondCode string) string {
		return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
spec:
  nodeName: ` + c.node + `
  restartPolicy: Never
  volumes:
  - name: state
    emptyDir: {}
  containers:
  - name: retry
    image: ` + c.busybox + `
    restartPolicy: Never
    restartPolicyRules:
    - action: Restart
      exitCodes: {operator: In, values: [42]}
    volumeMounts: [{name: state, mountPath: /state}]
    command: ['sh', '-c', 'if [ -e /state/ran ]; then echo second; exit ` + secondCode + `; fi; touch /state/ran; echo first; exit 42']
`
	}
	c.apply(t, ns, pod("retried", "0"))
	p := c.waitPod(t, ns, "retried", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed })
	if p.Status.Phase != v1.PodSucceeded {
		t.Fatalf("pod phase %s, want Succeeded after the rule restarted its container once", p.Status.Phase)
	}
	s := p.Status.ContainerStatuses[0]
	if s.RestartCount != 1 || s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 ||
		s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.ExitCode != 42 {
		t.Errorf("container status %+v: want one restart, last exit 42, then 0", s)
	}
	// Exit 3 matches no rule: the container's own Never holds.
	c.apply(t, ns, pod("not-retried", "3"))
	p = c.waitPod(t, ns, "not-retried", 3*time.Minute, "failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed || p.Status.Phase == v1.PodSucceeded })
	if p.Status.Phase != v1.PodFailed {
		t.Fatalf("pod phase %s, want Failed (exit 3 matches no rule)", p.Status.Phase)
	}
	if s := p.Status.ContainerStatuses[0]; s.RestartCount != 1 || s.State.Terminated == nil || s.State.Terminated.ExitCode != 3 {
		t.Errorf("container status %+v: want one restart (on 42), then exit 3 for good", s)
	}
}

// ephemeralStatus finds an ephemeral container's status.
func ephemeralStatus(p *v1.Pod, name string) (v1.ContainerStatus, bool) {
	for _, s := range p.Status.EphemeralContainerStatuses {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// testDebugEphemeralContainer: kubectl debug adds ephemeral containers to a
// running pod. One targeting the app sees the app's processes and its log
// is readable; one interactive takes its input through attach (`kubectl
// debug -it`); one long-running takes kubectl exec. None is restarted.
func (c *cluster) testDebugEphemeralContainer(t *testing.T) {
	ns := c.namespace(t, "debug")
	// kubectl debug's default profile adds SYS_PTRACE, which the default
	// baseline Pod Security level refuses: as upstream, such a namespace
	// must allow it.
	c.server.MustKubectl(t, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: target
spec:
  nodeName: `+c.node+`
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
`)
	c.waitPod(t, ns, "target", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	r := c.server.Kubectl(t, "debug", "-n", ns, "target", "--image=busybox", "--target=app", "-c", "debugger", "--", "sh", "-c", "ps; echo debugged")
	if r.ExitCode != 0 {
		t.Fatalf("kubectl debug: %s", r)
	}
	p := c.waitPod(t, ns, "target", 3*time.Minute, "the debugger ran", func(p *v1.Pod) bool {
		s, ok := ephemeralStatus(p, "debugger")
		return ok && s.State.Terminated != nil
	})
	if s, _ := ephemeralStatus(p, "debugger"); s.State.Terminated.ExitCode != 0 || s.RestartCount != 0 || s.Ready {
		t.Errorf("debugger status %+v: want exited 0, never restarted, not ready", s)
	}
	// It shares the target's PID namespace: ps lists the app's sleep.
	r = c.server.Kubectl(t, "logs", "-n", ns, "target", "-c", "debugger")
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "sleep 3600") || !strings.HasSuffix(r.Stdout, "debugged\n") {
		t.Errorf("kubectl logs -c debugger: %s\nwant ps showing the app's sleep 3600, then debugged", r)
	}
	// Interactive, as a user types it (kubectl falls back from the TTY
	// when its input is not a terminal).
	r = c.server.KubectlIn(t, "echo typed-in; exit 0\n", "debug", "-it", "-n", ns, "target", "--image=busybox", "--target=app", "-c", "shell", "--", "sh")
	if r.ExitCode != 0 || !strings.Contains(r.Stdout, "typed-in") {
		t.Errorf("kubectl debug -it: %s\nwant the shell's answer to its input", r)
	}
	// A long-running one takes exec.
	c.server.MustKubectl(t, "debug", "-n", ns, "target", "--image=busybox", "-c", "sleeper", "--", "sleep", "3600")
	c.waitPod(t, ns, "target", 3*time.Minute, "the sleeper runs", func(p *v1.Pod) bool {
		s, ok := ephemeralStatus(p, "sleeper")
		return ok && s.State.Running != nil
	})
	r = c.server.Kubectl(t, "exec", "-n", ns, "target", "-c", "sleeper", "--", "echo", "polo")
	if r.ExitCode != 0 || r.Stdout != "polo\n" {
		t.Errorf("kubectl exec -c sleeper: %s, want polo", r)
	}
	p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), "target", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.Spec.EphemeralContainers); got != 3 {
		t.Errorf("%d ephemeral containers in the spec, want 3", got)
	}
	for _, name := range []string{"debugger", "shell"} {
		if s, ok := ephemeralStatus(p, name); !ok || s.State.Terminated == nil || s.RestartCount != 0 {
			t.Errorf("ephemeral container %s: %s", name, describeStatus(s))
		}
	}
}

func describeStatus(s v1.ContainerStatus) string {
	return fmt.Sprintf("restarts=%d state=%+v", s.RestartCount, s.State)
}
