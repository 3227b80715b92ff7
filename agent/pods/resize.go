package pods

// In-place pod resize (InPlacePodVerticalScaling), as kubelet does it. Its
// parts, from pure to effectful:
//
//   - resizeValues and resizeActionFor compare what a container was granted
//     with what its cgroup holds, in the units the cgroup uses, and say
//     whether it needs nothing, an update in place, or a restart (its
//     resizePolicy says RestartContainer for a resource that changed);
//   - fitResize decides whether the node grants a pod the resources its spec
//     now asks for: Infeasible never, Deferred not beside the other pods'
//     allocations for now (retried on every sync), else granted;
//   - the worker keeps each container's allocation (what the node granted),
//     admits resizes, actuates them on the running containers through
//     containerd (the same conversion as at create, applyResources), records
//     what is in force on the container itself (labelResources), and
//     reports allocatedResources, resources and the PodResizePending and
//     PodResizeInProgress conditions in the status.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	resourcehelper "k8s.io/component-helpers/resource"
)

const (
	// labelResources records on a container the CPU and memory requests
	// and limits in force in its cgroup (JSON of ResourceRequirements):
	// set at create, rewritten by each in-place resize.
	labelResources = "keelson.io/resources"
	// labelResizeRestart marks a container killed because a resize needs
	// it restarted: it starts again whatever the restart policy and
	// without back-off, as kubelet restarts it in the same sync.
	labelResizeRestart = "keelson.io/resize-restart"
)

// Reasons and messages of the resize conditions, as kubelet words them.
const (
	reasonResizeError = "Error"
	msgPodLevelResize = "In-place pod-level resources resize is not supported on this node"
)

// resizeValues are what a resize compares of a container's resources, in
// the units its cgroup uses them: milli-CPU and bytes. Two requirements
// that differ only in how a quantity is written are equal.
type resizeValues struct{ cpuReq, cpuLim, memReq, memLim int64 }

func valuesOf(r v1.ResourceRequirements) resizeValues {
	return resizeValues{
		cpuReq: r.Requests.Cpu().MilliValue(),
		cpuLim: r.Limits.Cpu().MilliValue(),
		memReq: r.Requests.Memory().Value(),
		memLim: r.Limits.Memory().Value(),
	}
}

// resizeAction is what a running container needs for its allocation to be
// in force.
type resizeAction int

const (
	resizeNone resizeAction = iota
	resizeUpdate
	resizeRestart
)

// resizeActionFor compares a running container's allocation with what its
// cgroup holds: a resource that changed and whose resizePolicy is
// RestartContainer restarts the container; any other change is applied in
// place (NotRequired, the default).
func resizeActionFor(c *v1.Container, allocated, applied v1.ResourceRequirements) resizeAction {
	want, have := valuesOf(allocated), valuesOf(applied)
	if want == have {
		return resizeNone
	}
	restarts := func(name v1.ResourceName) bool {
		for _, p := range c.ResizePolicy {
			if p.ResourceName == name {
				return p.RestartPolicy == v1.RestartContainer
			}
		}
		return false
	}
	cpuChanged := want.cpuReq != have.cpuReq || want.cpuLim != have.cpuLim
	memChanged := want.memReq != have.memReq || want.memLim != have.memLim
	if cpuChanged && restarts(v1.ResourceCPU) || memChanged && restarts(v1.ResourceMemory) {
		return resizeRestart
	}
	return resizeUpdate
}

// memoryLimitLowered: the new memory limit is set where there was none, or
// is below the old one; kubelet then checks the usage first, since the
// kernel would reclaim or OOM-kill to enforce it.
func memoryLimitLowered(allocated, applied v1.ResourceRequirements) (int64, bool) {
	want, have := valuesOf(allocated).memLim, valuesOf(applied).memLim
	return want, want > 0 && (have == 0 || want < have)
}

// fitResize decides whether the node grants pod the resources its spec
// asks for, given what it allocated the pod before (podAllocated, the
// pod-level resources) and what the other pods it runs were allocated.
// It returns "" when it does, else the PodResizePending reason and message.
func fitResize(pod *v1.Pod, podAllocated *v1.ResourceRequirements, allocatable, usedByOthers v1.ResourceList) (string, string) {
	if !equality.Semantic.DeepEqual(pod.Spec.Resources, podAllocated) {
		return v1.PodReasonInfeasible, msgPodLevelResize
	}
	requested := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
		if _, ok := allocatable[name]; !ok {
			continue // the node does not say: nothing to hold the pod to
		}
		amount := func(l v1.ResourceList) int64 {
			q := l[name]
			if name == v1.ResourceCPU {
				return q.MilliValue()
			}
			return q.Value()
		}
		req, used, capv := amount(requested), amount(usedByOthers), amount(allocatable)
		if req > 0 && req > capv-used {
			// The scheduler's and kubelet's words for a pod that does not
			// fit; in-place resize defers it until room is made.
			return v1.PodReasonDeferred, fmt.Sprintf("Node didn't have enough resource: %s, requested: %d, used: %d, capacity: %d", name, req, used, capv)
		}
	}
	return "", ""
}

// resizable lists the containers whose resources a resize may change:
// the regular containers and the sidecars.
func resizable(pod *v1.Pod) []*v1.Container {
	var out []*v1.Container
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			out = append(out, &pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// cpuMemory keeps only the CPU and memory of r, the resources a resize
// actuates.
func cpuMemory(r v1.ResourceRequirements) v1.ResourceRequirements {
	pick := func(l v1.ResourceList) v1.ResourceList {
		var out v1.ResourceList
		for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			if q, ok := l[name]; ok {
				if out == nil {
					out = v1.ResourceList{}
				}
				out[name] = q.DeepCopy()
			}
		}
		return out
	}
	return v1.ResourceRequirements{Requests: pick(r.Requests), Limits: pick(r.Limits)}
}

// encodeApplied is the labelResources value for r.
func encodeApplied(r v1.ResourceRequirements) string {
	b, _ := json.Marshal(cpuMemory(r)) // maps of quantities always encode
	return string(b)
}

// appliedOf reads what a container's cgroup holds from its label; false
// for a container created before the agent recorded it.
func appliedOf(c *runtime.Container) (v1.ResourceRequirements, bool) {
	var r v1.ResourceRequirements
	s, ok := c.Labels[labelResources]
	if !ok || json.Unmarshal([]byte(s), &r) != nil {
		return v1.ResourceRequirements{}, false
	}
	return r, true
}

// reportedResources is a container's status.resources: its allocation,
// with the CPU and memory its running cgroup holds in their place (they
// differ while a resize is being actuated).
func reportedResources(allocated v1.ResourceRequirements, applied *v1.ResourceRequirements) *v1.ResourceRequirements {
	out := allocated.DeepCopy()
	if applied == nil {
		return out
	}
	in := cpuMemory(*applied)
	for _, pair := range []struct{ dst, src *v1.ResourceList }{{&out.Requests, &in.Requests}, {&out.Limits, &in.Limits}} {
		for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			delete(*pair.dst, name)
			if q, ok := (*pair.src)[name]; ok {
				if *pair.dst == nil {
					*pair.dst = v1.ResourceList{}
				}
				(*pair.dst)[name] = q
			}
		}
		if len(*pair.dst) == 0 {
			*pair.dst = nil
		}
	}
	return out
}

// resizeState is what a worker knows of its pod's resources.
type resizeState struct {
	// allocated is what the node granted each container, by name; nil
	// until the pod is first allocated. podResources is the pod-level
	// resources granted.
	allocated    map[string]v1.ResourceRequirements
	podResources *v1.ResourceRequirements
	// pending is the PodResizePending condition while the node does not
	// grant what the spec asks; inProgress the PodResizeInProgress one
	// while a granted resize is not in force.
	pending, inProgress *v1.PodCondition
}

// allocatedContainer is c with the resources the node granted it: a
// container starts with those, not with a spec the node has not granted.
func (w *worker) allocatedContainer(c *v1.Container) *v1.Container {
	r, ok := w.resize.allocated[c.Name]
	if !ok {
		return c
	}
	out := *c
	out.Resources = *r.DeepCopy()
	return &out
}

// allocate grants the pod its resources the first time the worker runs
// it: what its containers' cgroups hold when they run (the agent
// restarted), else its spec.
func (w *worker) allocate(pod *v1.Pod, cs podContainers) {
	if w.resize.allocated != nil {
		return
	}
	w.resize.allocated = map[string]v1.ResourceRequirements{}
	for _, c := range resizable(pod) {
		r := *c.Resources.DeepCopy()
		if cur := cs.latest(c.Name); cur != nil {
			if applied, ok := appliedOf(cur); ok {
				r = *reportedResources(r, &applied) // the spec, with the CPU and memory in force
			}
		}
		w.resize.allocated[c.Name] = r
	}
	w.resize.podResources = pod.Spec.Resources.DeepCopy()
	w.publishAllocation(pod)
}

// allocatedPod is pod as the node granted it: a container starts in it.
func (w *worker) allocatedPod(pod *v1.Pod) *v1.Pod {
	if w.resize.allocated == nil {
		return pod
	}
	out := pod.DeepCopy()
	for _, c := range resizable(out) {
		if r, ok := w.resize.allocated[c.Name]; ok {
			c.Resources = *r.DeepCopy()
		}
	}
	out.Spec.Resources = w.resize.podResources.DeepCopy()
	return out
}

// publishAllocation tells the manager what the pod holds of the node, for
// the other pods' resizes.
func (w *worker) publishAllocation(pod *v1.Pod) {
	req := resourcehelper.PodRequests(w.allocatedPod(pod), resourcehelper.PodResourcesOptions{})
	w.m.mu.Lock()
	w.m.allocations[w.uid] = req
	w.m.mu.Unlock()
}

// resizeRequested: the spec asks for other resources than were granted.
func (w *worker) resizeRequested(pod *v1.Pod) bool {
	for _, c := range resizable(pod) {
		if a, ok := w.resize.allocated[c.Name]; !ok || !equality.Semantic.DeepEqual(a, c.Resources) {
			return true
		}
	}
	return !equality.Semantic.DeepEqual(pod.Spec.Resources, w.resize.podResources)
}

// admitResize grants the spec's resources when they differ from the
// allocation and the node has room, or says why it does not (pending).
func (w *worker) admitResize(pod *v1.Pod) {
	if !w.resizeRequested(pod) {
		w.resize.pending = nil
		return
	}
	reason, msg := fitResize(pod, w.resize.podResources, w.m.opts.Node.Allocatable(), w.m.usedByOthers(pod.UID))
	if reason != "" {
		prev := w.resize.pending
		w.resize.pending = &v1.PodCondition{Type: v1.PodResizePending, Status: v1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: pod.Generation}
		if prev == nil || prev.Reason != reason || prev.ObservedGeneration != pod.Generation {
			w.m.event(pod, v1.EventTypeWarning, "Resize"+reason, "Pod resize %s: %s (generation %d)", reason, msg, pod.Generation)
		}
		return
	}
	w.resize.pending = nil
	for _, c := range resizable(pod) {
		w.resize.allocated[c.Name] = *c.Resources.DeepCopy()
	}
	w.publishAllocation(pod)
	w.resize.inProgress = &v1.PodCondition{Type: v1.PodResizeInProgress, Status: v1.ConditionTrue, ObservedGeneration: pod.Generation}
	w.m.event(pod, v1.EventTypeNormal, "ResizeStarted", "Pod resize started (generation %d)", pod.Generation)
}

// actuateResize brings each running resizable container to its
// allocation: a cgroup update in place, or a kill that the next step
// restarts. It reports whether it killed a container.
func (w *worker) actuateResize(ctx context.Context, pod *v1.Pod, cs podContainers) (bool, error) {
	killed := false
	var errs []error
	for _, c := range resizable(pod) {
		cur := cs.latest(c.Name)
		if cur == nil || cur.State != runtime.StateRunning {
			continue // it starts with its allocation
		}
		allocated := w.resize.allocated[c.Name]
		applied, known := appliedOf(cur)
		action := resizeActionFor(c, allocated, applied)
		if !known && action == resizeRestart {
			// Created before the agent recorded what it applied: never
			// restart it for that; an update is harmless.
			action = resizeUpdate
		}
		switch action {
		case resizeRestart:
			if err := w.m.rt.SetLabels(ctx, cur.ID, map[string]string{labelResizeRestart: "true"}); err != nil {
				return killed, err
			}
			w.m.event(pod, v1.EventTypeNormal, "Killing", "Container %s resize requires restart", c.Name)
			if err := w.m.killContainer(ctx, pod, c, cur.ID, podGrace(pod), false, nil); err != nil {
				return killed, err
			}
			killed = true
		case resizeUpdate:
			if err := w.updateResources(ctx, pod, c, cur, allocated, applied); err != nil {
				errs = append(errs, err)
			}
		}
	}
	w.finishResize(pod, errors.Join(errs...))
	return killed, nil
}

// updateResources applies a container's allocation to its running cgroup,
// unless that would set a memory limit below what it uses.
func (w *worker) updateResources(ctx context.Context, pod *v1.Pod, c *v1.Container, cur *runtime.Container, allocated, applied v1.ResourceRequirements) error {
	if limit, lowered := memoryLimitLowered(allocated, applied); lowered {
		usage, err := w.m.memoryUsage(w.m.cgroupPath(pod.UID, cur.ID))
		if err != nil {
			return fmt.Errorf("unable to read container %q memory usage: %w", c.Name, err)
		}
		if usage >= uint64(limit) {
			return fmt.Errorf("attempting to set container %q memory limit (%d) below current usage (%d)", c.Name, limit, usage)
		}
	}
	var spec runtime.ContainerSpec
	applyResources(&spec, w.allocatedContainer(c))
	if err := w.m.rt.UpdateResources(ctx, cur.ID, spec.Resources, map[string]string{labelResources: encodeApplied(allocated)}); err != nil {
		return fmt.Errorf("updating container %q: %w", c.Name, err)
	}
	return nil
}

// finishResize sets the PodResizeInProgress condition after an actuation:
// gone once everything running holds its allocation, kept with the error
// while something could not be applied (retried on the next sync).
func (w *worker) finishResize(pod *v1.Pod, err error) {
	prev := w.resize.inProgress
	if err == nil {
		if prev != nil {
			w.m.event(pod, v1.EventTypeNormal, "ResizeCompleted", "Pod resize completed (generation %d)", prev.ObservedGeneration)
		}
		w.resize.inProgress = nil
		return
	}
	gen := pod.Generation
	if prev != nil {
		gen = prev.ObservedGeneration
	}
	msg := err.Error()
	if prev == nil || prev.Message != msg {
		w.m.event(pod, v1.EventTypeWarning, "ResizeError", "Pod resize error: %s (generation %d)", msg, gen)
	}
	w.resize.inProgress = &v1.PodCondition{Type: v1.PodResizeInProgress, Status: v1.ConditionTrue, Reason: reasonResizeError, Message: msg, ObservedGeneration: gen}
}

// resizeConditions are the pod's resize conditions now.
func (w *worker) resizeConditions() []v1.PodCondition {
	var out []v1.PodCondition
	for _, c := range []*v1.PodCondition{w.resize.pending, w.resize.inProgress} {
		if c != nil {
			out = append(out, *c)
		}
	}
	return out
}

// resizeStatus fills a container's allocatedResources and resources, as
// kubelet does for every container the runtime knows.
func (w *worker) resizeStatus(st *v1.ContainerStatus, c *v1.Container, cur *runtime.Container) {
	if cur == nil {
		return
	}
	allocated := w.allocatedContainer(c).Resources
	var applied *v1.ResourceRequirements
	if cur.State == runtime.StateRunning {
		if a, ok := appliedOf(cur); ok {
			applied = &a
		}
	}
	st.Resources = reportedResources(allocated, applied)
	st.AllocatedResources = allocated.Requests.DeepCopy()
}

// usedByOthers sums what the node granted the pods it runs other than uid:
// their allocations, or their specs until their workers allocated them.
func (m *Manager) usedByOthers(uid types.UID) v1.ResourceList {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := v1.ResourceList{}
	for id, p := range m.pods {
		if id == uid || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		req, ok := m.allocations[id]
		if !ok {
			req = resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
		}
		for name, q := range req {
			sum := out[name]
			sum.Add(q)
			out[name] = sum
		}
	}
	return out
}
