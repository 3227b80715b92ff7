package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podCondition(p *v1.Pod, t v1.PodConditionType) v1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return v1.PodCondition{}
}

// testLivenessBackOff: a container whose liveness probe always fails is
// restarted, first at once, then after 10 s, then after 20 s.
func (c *cluster) testLivenessBackOff(t *testing.T) {
	ns := c.namespace(t, "liveness")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: unhealthy
spec:
  nodeName: `+c.node+`
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
    livenessProbe:
      exec:
        command: ['cat', '/tmp/healthy']
      periodSeconds: 1
      failureThreshold: 1
`)
	// Each restart shows the new run's start and the killed run's end: the
	// difference is how long the agent waited to restart it.
	gaps := map[int32]time.Duration{}
	sawBackOff := false
	c.waitPod(t, ns, "unhealthy", 4*time.Minute, "three restarts", func(p *v1.Pod) bool {
		s := p.Status.ContainerStatuses
		if len(s) == 0 {
			return false
		}
		if w := s[0].State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
		}
		if r := s[0].State.Running; r != nil && s[0].LastTerminationState.Terminated != nil {
			if _, ok := gaps[s[0].RestartCount]; !ok {
				gaps[s[0].RestartCount] = r.StartedAt.Sub(s[0].LastTerminationState.Terminated.FinishedAt.Time)
			}
		}
		return s[0].RestartCount >= 3 && gaps[3] > 0
	})
	t.Logf("restart gaps: %v", gaps)
	if gaps[2] < 9*time.Second || gaps[3] < 19*time.Second || gaps[3] <= gaps[2] {
		t.Errorf("restart gaps %v: want the second after 10 s and the third after 20 s", gaps)
	}
	if !sawBackOff {
		t.Error("never saw the container waiting in CrashLoopBackOff")
	}
	c.expectEvent(t, ns, "unhealthy", "Unhealthy", "Liveness probe failed")
	c.expectEvent(t, ns, "unhealthy", "Killing", "failed liveness probe, will be restarted")
}

// expectEvent waits for an event about a pod with the reason and a message
// containing msg.
func (c *cluster) expectEvent(t *testing.T, ns, pod, reason, msg string) {
	t.Helper()
	harness.Eventually(t, time.Minute, fmt.Sprintf("event %s %q on %s", reason, msg, pod), func() (bool, string) {
		evs, err := c.client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == pod && e.Reason == reason && strings.Contains(e.Message, msg) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "; ")
	})
}

// testReadinessNeverReady: a container whose readiness probe fails runs but
// keeps the pod out of Ready.
func (c *cluster) testReadinessNeverReady(t *testing.T) {
	ns := c.namespace(t, "readiness")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: never-ready
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
    readinessProbe:
      exec:
        command: ['false']
      periodSeconds: 1
`)
	c.waitPod(t, ns, "never-ready", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	c.expectEvent(t, ns, "never-ready", "Unhealthy", "Readiness probe failed")
	// Probed and failed several times since: still not ready.
	time.Sleep(3 * time.Second)
	p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), "never-ready", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r := podCondition(p, v1.PodReady); r.Status != v1.ConditionFalse || r.Reason != "ContainersNotReady" || r.Message != "containers with unready status: [app]" {
		t.Errorf("Ready condition %+v", r)
	}
	if r := podCondition(p, v1.ContainersReady); r.Status != v1.ConditionFalse {
		t.Errorf("ContainersReady condition %+v", r)
	}
	s := p.Status.ContainerStatuses[0]
	if s.Ready || s.Started == nil || !*s.Started || s.State.Running == nil || s.RestartCount != 0 {
		t.Errorf("container status %+v: want running, started, not ready, never restarted", s)
	}
	out := c.server.MustKubectl(t, "get", "pod", "-n", ns, "never-ready", "--no-headers")
	if f := strings.Fields(out); len(f) < 3 || f[1] != "0/1" || f[2] != "Running" {
		t.Errorf("kubectl get: %q, want 0/1 Running", out)
	}
}

// testInitContainers: init containers run one after the other before the
// app; a failing one blocks the pod.
func (c *cluster) testInitContainers(t *testing.T) {
	ns := c.namespace(t, "init")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: ordered
spec:
  nodeName: `+c.node+`
  volumes:
  - name: work
    emptyDir: {}
  initContainers:
  - name: first
    image: `+c.busybox+`
    command: ['sh', '-c', 'sleep 1; echo first >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: `+c.busybox+`
    command: ['sh', '-c', 'echo second >> /work/order']
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'cat /work/order; echo app; sleep 3600']
    volumeMounts: [{name: work, mountPath: /work}]
---
apiVersion: v1
kind: Pod
metadata:
  name: blocked
spec:
  nodeName: `+c.node+`
  restartPolicy: Always
  initContainers:
  - name: fails
    image: `+c.busybox+`
    command: ['sh', '-c', 'exit 1']
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: failed
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  initContainers:
  - name: fails
    image: `+c.busybox+`
    command: ['sh', '-c', 'exit 2']
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
`)
	p := c.waitPod(t, ns, "ordered", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	if cond := podCondition(p, v1.PodInitialized); cond.Status != v1.ConditionTrue {
		t.Errorf("Initialized %+v", cond)
	}
	for _, s := range p.Status.InitContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" || !s.Ready {
			t.Errorf("init container %s: %+v", s.Name, s.State)
		}
	}
	harness.Eventually(t, time.Minute, "the app saw both init containers, in order", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "ordered", "-c", "app")
		return r.Stdout == "first\nsecond\napp\n", r.String()
	})

	b := c.waitPod(t, ns, "blocked", 3*time.Minute, "its init container crash-loops", func(p *v1.Pod) bool {
		s := p.Status.InitContainerStatuses
		return len(s) == 1 && s[0].RestartCount >= 1 && s[0].LastTerminationState.Terminated != nil
	})
	if b.Status.Phase != v1.PodPending {
		t.Errorf("phase %s, want Pending", b.Status.Phase)
	}
	if app := b.Status.ContainerStatuses[0]; app.State.Waiting == nil || app.State.Waiting.Reason != "PodInitializing" {
		t.Errorf("app container %+v, want waiting PodInitializing", app.State)
	}
	if cond := podCondition(b, v1.PodInitialized); cond.Status != v1.ConditionFalse || cond.Reason != "ContainersNotInitialized" {
		t.Errorf("Initialized %+v", cond)
	}

	f := c.waitPod(t, ns, "failed", 3*time.Minute, "failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
	if s := f.Status.InitContainerStatuses[0]; s.State.Terminated == nil || s.State.Terminated.ExitCode != 2 || s.State.Terminated.Reason != "Error" {
		t.Errorf("failed init container %+v", s.State)
	}
	if app := f.Status.ContainerStatuses[0]; app.State.Running != nil || app.State.Terminated != nil {
		t.Errorf("the app container ran after a failed init container: %+v", app.State)
	}
	out := c.server.MustKubectl(t, "get", "pod", "-n", ns, "failed", "--no-headers")
	if fields := strings.Fields(out); len(fields) < 3 || fields[2] != "Init:Error" {
		t.Errorf("kubectl get: %q, want Init:Error", out)
	}
}

// testDeleteRunsPreStopAndRespectsGrace: deleting a pod runs its preStop
// hook, then sends TERM; a container that ignores TERM lives until the
// grace period ends.
func (c *cluster) testDeleteRunsPreStopAndRespectsGrace(t *testing.T) {
	ns := c.namespace(t, "prestop")
	// A hostPath volume: Pod Security's baseline default refuses it.
	if r := c.server.Kubectl(t, "label", "namespace", ns, "pod-security.kubernetes.io/enforce=privileged"); r.ExitCode != 0 {
		t.Fatalf("labelling %s privileged: %s", ns, r)
	}
	dir, err := os.MkdirTemp("", "kprestop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: graceful
spec:
  nodeName: `+c.node+`
  terminationGracePeriodSeconds: 6
  volumes:
  - name: log
    hostPath: {path: `+dir+`, type: Directory}
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'trap "echo TERM >> /log/events" TERM; echo started >> /log/events; while true; do sleep 1; done']
    volumeMounts: [{name: log, mountPath: /log}]
    lifecycle:
      preStop:
        exec:
          command: ['sh', '-c', 'echo prestop >> /log/events']
`)
	c.waitPod(t, ns, "graceful", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	harness.Eventually(t, time.Minute, "the container started", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "events"))
		return string(b) == "started\n", string(b)
	})
	deleted := time.Now()
	if err := c.client.CoreV1().Pods(ns).Delete(context.Background(), "graceful", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 2*time.Minute, "the pod is gone", func() (bool, string) {
		_, err := c.client.CoreV1().Pods(ns).Get(context.Background(), "graceful", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	gone := time.Since(deleted)
	b, _ := os.ReadFile(filepath.Join(dir, "events"))
	if string(b) != "started\nprestop\nTERM\n" {
		t.Errorf("events %q, want the preStop hook before TERM", b)
	}
	// The container ignored TERM: only the grace period's end killed it.
	if gone < 6*time.Second {
		t.Errorf("the pod was gone %s after deletion, before its 6 s grace period", gone)
	}
}
