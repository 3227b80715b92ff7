package pods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// minGrace is the least time a container gets between its stop signal and
// SIGKILL, as in kubelet (a force-deleted pod's containers too).
const minGrace = 2 * time.Second

// killWait bounds the wait for a container to die after SIGKILL.
const killWait = 10 * time.Second

// killContainer stops a running container: its preStop hook (unless
// skipped) within the grace period, then, once every channel of after is
// closed (the containers it must outlive have stopped) or the grace period
// ran out, its stop signal, then SIGKILL once the rest of the grace period
// has passed.
func (m *Manager) killContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, grace time.Duration, skipPreStop bool, after []<-chan struct{}) error {
	start := m.clock.Now()
	if !skipPreStop && c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		hctx, cancel := context.WithTimeout(ctx, grace)
		err := m.runHook(hctx, pod, c, id, podIPOf(pod, m), c.Lifecycle.PreStop)
		cancel()
		if err != nil {
			m.event(pod, v1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed: %v", err)
		}
	}
	waitTurn(ctx, after, grace-m.clock.Since(start))
	left := max(grace-m.clock.Since(start), minGrace)
	sig := syscall.SIGTERM
	if rc, err := m.rt.Inspect(ctx, id); err == nil {
		if cfg, err := m.rt.ImageConfigOf(ctx, rc.Image); err == nil && cfg.StopSignal != "" {
			if s, ok := parseSignal(cfg.StopSignal); ok {
				sig = s
			}
		}
	}
	if err := m.rt.Signal(ctx, id, sig); err != nil {
		if gone, _ := m.stopped(ctx, id); gone {
			return nil
		}
		return err
	}
	if m.waitStopped(ctx, id, left) {
		return nil
	}
	if err := m.rt.Signal(ctx, id, syscall.SIGKILL); err != nil {
		if gone, _ := m.stopped(ctx, id); gone {
			return nil
		}
		return err
	}
	if !m.waitStopped(ctx, id, killWait) {
		return fmt.Errorf("container %s did not die after SIGKILL", id)
	}
	return nil
}

func (m *Manager) stopped(ctx context.Context, id string) (bool, error) {
	c, err := m.rt.Inspect(ctx, id)
	if runtime.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return c.State != runtime.StateRunning, nil
}

// waitStopped polls until the container no longer runs or d passes.
func (m *Manager) waitStopped(ctx context.Context, id string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if gone, err := m.stopped(ctx, id); err == nil && gone {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// podIPOf is the address hooks and probes reach a pod at.
func podIPOf(pod *v1.Pod, m *Manager) string {
	if pod.Status.PodIP != "" {
		return pod.Status.PodIP
	}
	if ips := m.opts.Node.HostIPs(); pod.Spec.HostNetwork && len(ips) > 0 {
		return ips[0]
	}
	return ""
}

// runHook runs a postStart or preStop handler.
func (m *Manager) runHook(ctx context.Context, pod *v1.Pod, c *v1.Container, id, podIP string, h *v1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		var out limitedBuffer
		out.max = 4096
		err := m.rt.Exec(ctx, id, runtime.ExecOptions{Cmd: h.Exec.Command, Stdout: &out, Stderr: &out})
		if err != nil && out.String() != "" {
			return fmt.Errorf("%w: %s", err, out.String())
		}
		return err
	case h.HTTPGet != nil:
		return httpProbe(ctx, h.HTTPGet, target{pod: pod, container: c, containerID: id, podIP: podIP})
	case h.Sleep != nil:
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		}
		return nil
	case h.TCPSocket != nil:
		return nil // deprecated and ignored by kubelet
	}
	return errors.New("hook has no handler")
}

func parseSignal(s string) (syscall.Signal, bool) {
	names := map[string]syscall.Signal{
		"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
		"SIGKILL": syscall.SIGKILL, "SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1,
		"SIGUSR2": syscall.SIGUSR2, "SIGWINCH": syscall.SIGWINCH, "SIGSTOP": syscall.SIGSTOP,
	}
	if sig, ok := names[s]; ok {
		return sig, true
	}
	if sig, ok := names["SIG"+s]; ok {
		return sig, true
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	return 0, false
}

// waitTurn waits until every channel of after is closed, at most d.
func waitTurn(ctx context.Context, after []<-chan struct{}, d time.Duration) {
	if len(after) == 0 || d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for _, ch := range after {
		select {
		case <-ch:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stopAll stops every running container of the pod within grace, in
// kubelet's order: the regular and ephemeral containers at once, each
// sidecar once the regular containers and the sidecars after it stopped.
func (w *worker) stopAll(ctx context.Context, pod *v1.Pod, cs podContainers, grace time.Duration) error {
	running := map[string]string{} // name -> container ID
	for name, list := range cs {
		if list[0].State == runtime.StateRunning {
			running[name] = list[0].ID
		}
	}
	stopped := make(map[string]chan struct{}, len(running))
	for name := range running {
		stopped[name] = make(chan struct{})
	}
	order := stopOrder(pod, running)
	var wg sync.WaitGroup
	errs := make(chan error, len(running))
	for name, id := range running {
		var spec *v1.Container
		if pod != nil {
			spec = findContainer(pod, name)
		}
		var after []<-chan struct{}
		for _, first := range order[name] {
			after = append(after, stopped[first])
		}
		w.m.event(pod, v1.EventTypeNormal, "Killing", "Stopping container %s", name)
		wg.Go(func() {
			defer close(stopped[name])
			errs <- w.m.killContainer(ctx, pod, spec, id, grace, false, after)
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// stopOrder says, for each running sidecar, which running containers must
// stop before it gets its stop signal: every regular container and every
// sidecar declared after it. The others stop at once.
func stopOrder(pod *v1.Pod, running map[string]string) map[string][]string {
	if pod == nil {
		return nil
	}
	var mains []string
	for _, c := range pod.Spec.Containers {
		if _, ok := running[c.Name]; ok {
			mains = append(mains, c.Name)
		}
	}
	order := map[string][]string{}
	var later []string // running sidecars after the current one
	for i := len(pod.Spec.InitContainers) - 1; i >= 0; i-- {
		c := &pod.Spec.InitContainers[i]
		if _, ok := running[c.Name]; !ok || !isSidecar(c) {
			continue
		}
		order[c.Name] = append(append([]string{}, mains...), later...)
		later = append(later, c.Name)
	}
	return order
}

// terminating stops a deleted pod's containers within its grace period,
// releases its network, reports its final status and lets the API server
// remove it.
func (w *worker) terminating(ctx context.Context, pod *v1.Pod) (time.Duration, error) {
	if err := w.stopAndReport(ctx, pod); err != nil {
		return 0, err
	}
	w.m.releaseHostPorts(w.uid)
	err := w.m.opts.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !isNotFound(err) {
		return 0, fmt.Errorf("deleting the terminated pod: %w", err)
	}
	return w.m.opts.SyncInterval, nil
}

// finished keeps a pod that completed (Succeeded or Failed) stopped: its
// containers and logs stay until the pod is deleted, its address is
// released.
func (w *worker) finished(ctx context.Context, pod *v1.Pod) (time.Duration, error) {
	// The rejection this worker wrote counts before the informer shows it.
	if rejectedAtAdmission(&pod.Status) || rejectedAtAdmission(w.written) {
		cs, err := w.containers(ctx)
		if err != nil || len(cs) == 0 {
			// The node never ran it: its status stays the rejection,
			// with no container statuses, as kubelet leaves it.
			return w.m.opts.SyncInterval, err
		}
	}
	if err := w.stopAndReport(ctx, pod); err != nil {
		return 0, err
	}
	w.m.releaseHostPorts(w.uid) // its containers stopped: a port it held is free
	return w.m.opts.SyncInterval, nil
}

// stopAndReport stops the pod's running containers within its grace
// period, releases its network and writes its terminal status.
func (w *worker) stopAndReport(ctx context.Context, pod *v1.Pod) error {
	cs, err := w.containers(ctx)
	if err != nil {
		return err
	}
	if err := w.stopAll(ctx, pod, cs, podGrace(pod)); err != nil {
		return err
	}
	if cs, err = w.containers(ctx); err != nil {
		return err
	}
	if err := w.releaseNetwork(ctx, pod); err != nil {
		return err
	}
	w.syncProbes(pod, cs)
	return w.writeStatus(ctx, pod, w.status(pod, cs, false, true))
}

func (w *worker) releaseNetwork(ctx context.Context, pod *v1.Pod) error {
	if pod != nil && pod.Spec.HostNetwork {
		return nil
	}
	if err := w.m.opts.Network.Teardown(ctx, podRef(pod, w.uid)); err != nil {
		return err
	}
	if w.sandbox != nil {
		w.sandbox.netns = ""
	}
	return nil
}

// cleanup removes everything of a pod that is gone from the API: its
// containers (stopped first, if a force deletion left them running), its
// network, volumes, directory and cgroups.
func (w *worker) cleanup(ctx context.Context) error {
	m := w.m
	list, err := m.rt.List(ctx, map[string]string{labelPodUID: string(w.uid)})
	if err != nil {
		return err
	}
	pod := w.lastPod
	cs := podContainers{}
	for _, c := range list {
		cs[c.Labels[labelContainerName]] = append(cs[c.Labels[labelContainerName]], c)
	}
	stopPod := pod
	if stopPod == nil {
		stopPod = &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: w.uid}}
	}
	if err := w.stopAll(ctx, stopPod, cs, minGrace); err != nil {
		return err
	}
	m.releaseHostPorts(w.uid)
	for _, c := range list {
		if err := m.removeContainer(ctx, c.ID); err != nil {
			return err
		}
	}
	if err := m.opts.Network.Teardown(ctx, podRef(pod, w.uid)); err != nil {
		return err
	}
	dir := m.PodDir(w.uid)
	if err := m.opts.Volumes.Teardown(ctx, string(w.uid), dir); err != nil {
		return err
	}
	if err := removeAll(dir); err != nil {
		return err
	}
	removeCgroups(path.Join(m.opts.CgroupRoot, "pod"+string(w.uid)))
	m.restarts.forget(string(w.uid) + "/")
	m.pulls.forget(string(w.uid) + "/")
	m.probes.retain(w.uid, nil)
	w.sandbox = nil
	if pod != nil {
		m.log.Info("pod cleaned up", "pod", podKey(pod))
	}
	return nil
}

// syncProbes runs the probes of the running containers and stops the
// others'.
func (w *worker) syncProbes(pod *v1.Pod, cs podContainers) {
	keep := map[string]bool{}
	terminating := pod.DeletionTimestamp != nil || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed
	if !terminating {
		all := append(append([]v1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
		for i := range all {
			c := &all[i]
			cur := cs.latest(c.Name)
			if cur == nil || cur.State != runtime.StateRunning {
				continue
			}
			keep[cur.ID] = true
			podIP := ""
			if w.sandbox != nil {
				podIP = w.sandbox.podIP
			}
			w.m.probes.ensure(target{pod: pod, container: c, containerID: cur.ID, podIP: podIP, startedAt: cur.StartedAt})
		}
	}
	w.m.probes.retain(w.uid, keep)
}

// cgroupPath is a container's cgroup: <root>/pod<uid>/<id>.
func (m *Manager) cgroupPath(uid types.UID, id string) string {
	return path.Join(m.opts.CgroupRoot, "pod"+string(uid), id)
}

// removeCgroups removes a pod's (empty) cgroup in every hierarchy.
func removeCgroups(rel string) {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err == nil {
		_ = os.Remove(filepath.Join(root, rel)) // cgroup v2
		return
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = os.Remove(filepath.Join(root, e.Name(), rel))
		}
	}
}
