package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Labels the agent puts on its containers.
const (
	labelManaged       = "keelson.io/managed"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	labelAttempt       = "keelson.io/attempt"
	labelInit          = "keelson.io/init-container"
	// labelShimGroup is the shim group the container joined (see
	// Manager.shimGroup).
	labelShimGroup = "keelson.io/shim-group"
)

// retryInterval is how soon a sync that failed (the API or the runtime
// refused something) is retried.
const retryInterval = 2 * time.Second

// worker reconciles one pod. Its fields are owned by its goroutine.
type worker struct {
	m      *Manager
	uid    types.UID
	wakeCh chan struct{}

	lastPod   *v1.Pod // last version seen, for the cleanup after deletion
	waiting   map[string]*v1.ContainerStateWaiting
	written   *v1.PodStatus // the status last written
	sandbox   *sandbox
	volumesAt time.Time // when volumes were last refreshed
	firstSeen time.Time
	started   bool       // all containers ran once (for the startup latency)
	admitted  bool       // the node accepted the pod (sysctls, AppArmor, host ports)
	rejection *rejection // why the node refused the pod, once it did
	resize    resizeState
}

func newWorker(m *Manager, uid types.UID) *worker {
	return &worker{m: m, uid: uid, wakeCh: make(chan struct{}, 1), waiting: map[string]*v1.ContainerStateWaiting{}}
}

func (w *worker) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

func (w *worker) pending() bool { return len(w.wakeCh) > 0 }

func (w *worker) run(ctx context.Context) {
	for {
		next, done := w.sync(ctx)
		if done && w.m.workerDone(w.uid, w) {
			return
		}
		if next <= 0 || next > w.m.opts.SyncInterval {
			next = w.m.opts.SyncInterval
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.wakeCh:
		case <-t.C:
		}
		t.Stop()
	}
}

// sync takes the next steps for the pod and says when to look again, or
// that the pod is gone and cleaned up.
func (w *worker) sync(ctx context.Context) (time.Duration, bool) {
	pod := w.m.pod(w.uid)
	if pod != nil {
		w.lastPod = pod
		if w.firstSeen.IsZero() {
			w.firstSeen = w.m.clock.Now()
			w.m.log.Debug("pod seen", "pod", podKey(pod), "sinceCreated", w.firstSeen.Sub(pod.CreationTimestamp.Time))
		}
	}
	var next time.Duration
	var err error
	switch {
	case pod == nil:
		if err = w.cleanup(ctx); err == nil {
			return 0, true
		}
	case pod.DeletionTimestamp != nil:
		next, err = w.terminating(ctx, pod)
	case w.terminal(pod):
		next, err = w.finished(ctx, pod)
	case w.pastDeadline(pod):
		next, err = w.deadlineExceeded(ctx, pod)
	case !w.admit(pod):
		next, err = w.reject(ctx, pod)
	default:
		next, err = w.running(ctx, pod)
		next = w.untilDeadline(pod, next)
	}
	if err != nil {
		if ctx.Err() == nil {
			key := string(w.uid)
			if w.lastPod != nil {
				key = podKey(w.lastPod)
			}
			w.m.log.Warn("syncing pod", "pod", key, "err", err)
		}
		return retryInterval, false
	}
	return next, false
}

// terminal: the pod's phase is Succeeded or Failed, as the API says or as
// this worker last wrote it (the informer may not have caught up yet).
func (w *worker) terminal(pod *v1.Pod) bool {
	phase := pod.Status.Phase
	if w.written != nil {
		if p := w.written.Phase; p == v1.PodSucceeded || p == v1.PodFailed {
			phase = p
		}
	}
	return phase == v1.PodSucceeded || phase == v1.PodFailed
}

// podContainers are a pod's containers by name, newest attempt first.
type podContainers map[string][]runtime.Container

func (pc podContainers) latest(name string) *runtime.Container {
	if l := pc[name]; len(l) > 0 {
		return &l[0]
	}
	return nil
}

func (pc podContainers) previous(name string) *runtime.Container {
	if l := pc[name]; len(l) > 1 {
		return &l[1]
	}
	return nil
}

func attemptNumber(c *runtime.Container) int32 {
	n, _ := strconv.Atoi(c.Labels[labelAttempt])
	return int32(n)
}

// containers reads the pod's containers from the runtime and reaps the
// exited ones (records their exit, releases their shim and output).
func (w *worker) containers(ctx context.Context) (podContainers, error) {
	list, err := w.m.rt.List(ctx, map[string]string{labelPodUID: string(w.uid)})
	if err != nil {
		return nil, err
	}
	out := podContainers{}
	for _, c := range list {
		if c.State == runtime.StateExited && !c.Reaped {
			if err := w.m.reap(ctx, c.ID); err != nil {
				return nil, err
			}
			if c, err = w.m.rt.Inspect(ctx, c.ID); err != nil {
				return nil, err
			}
		}
		if c.State == runtime.StateUnknown {
			// The task is gone without an exit record (containerd lost
			// it): record it as kubelet reports such a container.
			if err := w.m.rt.RecordExit(ctx, c.ID, 137, "ContainerStatusUnknown", "The container could not be located when the pod was terminated"); err != nil {
				return nil, err
			}
			if c, err = w.m.rt.Inspect(ctx, c.ID); err != nil {
				return nil, err
			}
		}
		name := c.Labels[labelContainerName]
		out[name] = append(out[name], c)
	}
	for name := range out {
		sortAttempts(out[name])
	}
	return out, nil
}

// sortAttempts orders a container's attempts newest first.
func sortAttempts(l []runtime.Container) {
	sort.Slice(l, func(i, j int) bool { return attemptNumber(&l[i]) > attemptNumber(&l[j]) })
}

// running drives a pod that should run.
func (w *worker) running(ctx context.Context, pod *v1.Pod) (time.Duration, error) {
	cs, err := w.containers(ctx)
	if err != nil {
		return 0, err
	}
	sb, sbErr := w.ensureSandbox(ctx, pod)
	var next time.Duration
	w.allocate(pod, cs)
	w.admitResize(pod)
	if sbErr == nil {
		killed, err := w.actuateResize(ctx, pod, cs)
		if err != nil {
			return 0, err
		}
		if killed {
			if cs, err = w.containers(ctx); err != nil {
				return 0, err
			}
		}
		if next, err = w.step(ctx, pod, sb, cs); err != nil {
			return 0, err
		}
		if cs, err = w.containers(ctx); err != nil {
			return 0, err
		}
	} else {
		if !errors.Is(sbErr, cni.ErrNoPodCIDR) && ctx.Err() == nil {
			w.m.event(pod, v1.EventTypeWarning, "FailedCreatePodSandBox", "%v", sbErr)
		}
		next = retryInterval
	}
	w.syncProbes(pod, cs)
	st := w.status(pod, cs, sbErr == nil, false)
	if err := w.writeStatus(ctx, pod, st); err != nil {
		return 0, err
	}
	w.reportStarted(pod, st)
	return next, nil
}

// step carries out the pod's plan: it kills what probes condemn, starts
// what should run (each after its back-off), or, once the regular
// containers are done for good, stops what still runs. It returns when to
// look again.
func (w *worker) step(ctx context.Context, pod *v1.Pod, sb *sandbox, cs podContainers) (time.Duration, error) {
	next := w.m.opts.SyncInterval
	wake := func(d time.Duration) {
		if d > 0 && d < next {
			next = d
		}
	}
	plan := planPod(pod, w.stateOf(cs))
	starting := map[string]bool{}
	for _, a := range plan.start {
		starting[a.c.Name] = true
	}
	for name := range w.waiting {
		if !starting[name] {
			delete(w.waiting, name) // runs, or is done for good
		}
	}
	if plan.stopAll {
		return next, w.stopAll(ctx, pod, cs, podGrace(pod))
	}
	for _, a := range plan.kill {
		// kubelet's words: a sidecar's kill always restarts it.
		msg := fmt.Sprintf("Container %s %s", a.c.Name, a.why)
		if a.kind == kindSidecar {
			msg = fmt.Sprintf("Init container %s %s", a.c.Name, a.why)
		} else if a.restart {
			msg += ", will be restarted"
		}
		w.m.event(pod, v1.EventTypeNormal, "Killing", "%s", msg)
		if err := w.m.killContainer(ctx, pod, a.c, cs.latest(a.c.Name).ID, probeGrace(pod, a.c, a.why), false, nil); err != nil {
			return 0, err
		}
		wake(time.Millisecond) // restart it on the next pass
	}
	if len(plan.start) > 0 {
		// Before any container starts, as kubelet pulls them.
		sb.images = w.m.ensureImageVolumes(ctx, pod, sb)
	}
	for _, a := range plan.start {
		d, err := w.startOrBackOff(ctx, pod, a.c, a.kind, sb, cs)
		if err != nil {
			return 0, err
		}
		wake(d)
		if d == 0 && a.kind == kindSidecar && !plan.initialized {
			// The next init container starts once this one runs (and its
			// startup probe passed, which wakes the worker itself).
			wake(time.Millisecond)
		}
	}
	return next, nil
}

// stateOf gives the planner each container's newest attempt and the
// verdicts of its probes.
func (w *worker) stateOf(cs podContainers) func(c *v1.Container) containerState {
	return func(c *v1.Container) containerState {
		cur := cs.latest(c.Name)
		if cur == nil {
			return containerState{}
		}
		st := containerState{exists: true, running: cur.State == runtime.StateRunning, exited: cur.State == runtime.StateExited, exitCode: cur.ExitCode}
		st.resizeRestart = st.exited && cur.Labels[labelResizeRestart] == "true"
		if st.running {
			st.started, _, st.kill = w.m.probes.verdicts(c, cur.ID)
		}
		return st
	}
}

// shouldRestart says whether container c of a pod with spec, exited with
// exitCode, runs again, as kubelet decides with ContainerRestartRules (beta,
// on by default since 1.35): the container's first matching
// restartPolicyRule with action Restart; else the container's own
// restartPolicy; else the pod's.
func shouldRestart(spec *v1.PodSpec, c *v1.Container, exitCode int32) bool {
	if c.RestartPolicy != nil {
		if rule, ok := matchingRestartRule(c, exitCode); ok && rule.Action == v1.ContainerRestartRuleActionRestart {
			return true
		}
		switch *c.RestartPolicy {
		case v1.ContainerRestartPolicyAlways:
			return true
		case v1.ContainerRestartPolicyOnFailure:
			return exitCode != 0
		case v1.ContainerRestartPolicyNever:
			return false
		}
	}
	switch spec.RestartPolicy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return true
}

// matchingRestartRule is c's first restartPolicyRule whose exit codes
// match exitCode.
func matchingRestartRule(c *v1.Container, exitCode int32) (v1.ContainerRestartRule, bool) {
	for _, r := range c.RestartPolicyRules {
		if r.ExitCodes == nil {
			continue
		}
		in := slices.Contains(r.ExitCodes.Values, exitCode)
		if r.ExitCodes.Operator == v1.ContainerRestartRuleOnExitCodesOpIn && in ||
			r.ExitCodes.Operator == v1.ContainerRestartRuleOnExitCodesOpNotIn && !in {
			return r, true
		}
	}
	return v1.ContainerRestartRule{}, false
}

// restartsAfterKill says whether a running container killed by its probes
// starts again: no exit code to match rules against, so the container's
// restartPolicy, else the pod's, decides (as kubelet).
func restartsAfterKill(spec *v1.PodSpec, c *v1.Container) bool {
	if c.RestartPolicy != nil {
		return *c.RestartPolicy != v1.ContainerRestartPolicyNever
	}
	return spec.RestartPolicy != v1.RestartPolicyNever
}

// probeGrace is the grace period of a kill for a failed probe: the probe's
// own, else the pod's.
func probeGrace(pod *v1.Pod, c *v1.Container, why string) time.Duration {
	p := c.LivenessProbe
	if why == "failed startup probe" {
		p = c.StartupProbe
	}
	if p != nil && p.TerminationGracePeriodSeconds != nil {
		return time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	}
	return podGrace(pod)
}

// podGrace is the pod's termination grace period.
func podGrace(pod *v1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// startOrBackOff starts the next attempt of a container unless its last
// failure is still backing off; it returns when the back-off ends.
func (w *worker) startOrBackOff(ctx context.Context, pod *v1.Pod, c *v1.Container, kind containerKind, sb *sandbox, cs podContainers) (time.Duration, error) {
	cur := cs.latest(c.Name)
	number := int32(0)
	if cur != nil {
		number = attemptNumber(cur) + 1
		if cur.State == runtime.StateCreated {
			// Created but never started (the agent stopped in between):
			// replace it.
			if err := w.m.removeContainer(ctx, cur.ID); err != nil {
				return 0, err
			}
			number--
		} else if cur.Labels[labelResizeRestart] != "true" {
			// A restart a resize asked for is no failure: no back-off.
			key := string(pod.UID) + "/" + c.Name
			if wait := w.m.restarts.wait(key, cur.FinishedAt); wait > 0 {
				w.waiting[c.Name] = &v1.ContainerStateWaiting{
					Reason:  reasonCrashLoopBackOff,
					Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", w.m.restarts.delay(key), c.Name, formatPod(pod)),
				}
				w.m.event(pod, v1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s", c.Name, formatPod(pod))
				return wait, nil
			}
			w.m.restarts.next(key, cur.FinishedAt)
		}
	}
	waiting, retry, err := w.m.startContainer(ctx, w.allocatedPod(pod), w.allocatedContainer(c), number, kind, sb)
	if err != nil {
		return 0, err
	}
	if waiting != nil {
		w.waiting[c.Name] = waiting
		return retry, nil
	}
	delete(w.waiting, c.Name)
	// Keep the new attempt and the one before it (for --previous and the
	// last state); older ones go.
	if l := cs[c.Name]; len(l) > 1 {
		for _, old := range l[1:] {
			if err := w.m.removeContainer(ctx, old.ID); err != nil {
				return 0, err
			}
		}
	}
	return 0, nil
}

// podRef is the CNI identity of a pod.
func podRef(pod *v1.Pod, uid types.UID) cni.Pod {
	if pod == nil {
		return cni.Pod{UID: string(uid)}
	}
	return cni.Pod{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)}
}

// removeAll removes path, ignoring a path already gone.
func removeAll(path string) error {
	if err := os.RemoveAll(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
