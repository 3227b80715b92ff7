package pods

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// reqs builds requirements from "cpu"/"memory" quantities; an empty
// string leaves the resource out, as the upstream resize specs do.
func reqs(cpuReq, cpuLim, memReq, memLim string) v1.ResourceRequirements {
	var r v1.ResourceRequirements
	set := func(l *v1.ResourceList, name v1.ResourceName, q string) {
		if q == "" {
			return
		}
		if *l == nil {
			*l = v1.ResourceList{}
		}
		(*l)[name] = resource.MustParse(q)
	}
	set(&r.Requests, v1.ResourceCPU, cpuReq)
	set(&r.Limits, v1.ResourceCPU, cpuLim)
	set(&r.Requests, v1.ResourceMemory, memReq)
	set(&r.Limits, v1.ResourceMemory, memLim)
	return r
}

func policy(cpu, mem v1.ResourceResizeRestartPolicy) []v1.ContainerResizePolicy {
	var out []v1.ContainerResizePolicy
	if cpu != "" {
		out = append(out, v1.ContainerResizePolicy{ResourceName: v1.ResourceCPU, RestartPolicy: cpu})
	}
	if mem != "" {
		out = append(out, v1.ContainerResizePolicy{ResourceName: v1.ResourceMemory, RestartPolicy: mem})
	}
	return out
}

// TestResizeActionFor: a changed resource whose resizePolicy is
// RestartContainer restarts the container, any other change is applied in
// place, and quantities written differently but equal change nothing.
func TestResizeActionFor(t *testing.T) {
	cases := []struct {
		name               string
		policy             []v1.ContainerResizePolicy
		allocated, applied v1.ResourceRequirements
		want               resizeAction
	}{
		{"unchanged", nil, reqs("20m", "30m", "35Mi", "45Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeNone},
		{"same value written differently", nil, reqs("0.5", "", "1Gi", ""), reqs("500m", "", "1024Mi", ""), resizeNone},
		{"cpu request, default policy", nil, reqs("25m", "30m", "35Mi", "45Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeUpdate},
		{"equivalent cpu 2m to 1m is still applied", nil, reqs("1m", "5m", "", ""), reqs("2m", "10m", "", ""), resizeUpdate},
		{"cpu limit added", nil, reqs("25m", "35m", "", ""), reqs("20m", "", "", ""), resizeUpdate},
		{"cpu change, cpu restarts", policy(v1.RestartContainer, v1.NotRequired), reqs("25m", "30m", "35Mi", "45Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeRestart},
		{"memory change, only cpu restarts", policy(v1.RestartContainer, v1.NotRequired), reqs("20m", "30m", "40Mi", "45Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeUpdate},
		{"memory request change, memory restarts", policy(v1.NotRequired, v1.RestartContainer), reqs("20m", "30m", "40Mi", "45Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeRestart},
		{"memory limit change, memory restarts", policy("", v1.RestartContainer), reqs("20m", "30m", "35Mi", "50Mi"), reqs("20m", "30m", "35Mi", "45Mi"), resizeRestart},
	}
	for _, tc := range cases {
		c := &v1.Container{Name: "c", ResizePolicy: tc.policy}
		if got := resizeActionFor(c, tc.allocated, tc.applied); got != tc.want {
			t.Errorf("%s: action %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestMemoryLimitLowered(t *testing.T) {
	cases := []struct {
		name               string
		allocated, applied v1.ResourceRequirements
		lowered            bool
	}{
		{"raised", reqs("", "", "", "50Mi"), reqs("", "", "", "45Mi"), false},
		{"lowered", reqs("", "", "", "40Mi"), reqs("", "", "", "45Mi"), true},
		{"added", reqs("", "", "30Mi", "50Mi"), reqs("", "", "35Mi", ""), true},
		{"none", reqs("", "", "30Mi", ""), reqs("", "", "35Mi", ""), false},
	}
	for _, tc := range cases {
		if _, got := memoryLimitLowered(tc.allocated, tc.applied); got != tc.lowered {
			t.Errorf("%s: lowered %v, want %v", tc.name, got, tc.lowered)
		}
	}
}

// TestApplyResourcesIsKubelets: the cgroup settings a container is created
// and resized with are kubelet's: shares from the request (else the
// limit, else the minimum 2), a CFS quota of at least 1000us from the
// limit, and the memory limit in bytes.
func TestApplyResourcesIsKubelets(t *testing.T) {
	cases := []struct {
		name string
		r    v1.ResourceRequirements
		want runtime.Resources
	}{
		{"best effort", reqs("", "", "", ""), runtime.Resources{CPUShares: 2}},
		{"request only", reqs("20m", "", "35Mi", ""), runtime.Resources{CPUShares: 20}},
		{"limit only", reqs("", "500m", "", "64Mi"), runtime.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20}},
		{"tiny limit has the minimum quota", reqs("1m", "5m", "", ""), runtime.Resources{CPUShares: 2, CPUQuota: 1000, CPUPeriod: 100000}},
		{"burstable", reqs("25m", "35m", "40Mi", "50Mi"), runtime.Resources{CPUShares: 25, CPUQuota: 3500, CPUPeriod: 100000, MemoryLimit: 50 << 20}},
	}
	for _, tc := range cases {
		var spec runtime.ContainerSpec
		applyResources(&spec, &v1.Container{Resources: tc.r})
		if spec.Resources != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, spec.Resources, tc.want)
		}
	}
}

func TestFitResize(t *testing.T) {
	pod := func(cpu, mem string, podLevel *v1.ResourceRequirements) *v1.Pod {
		return &v1.Pod{Spec: v1.PodSpec{Resources: podLevel, Containers: []v1.Container{{Name: "c", Resources: reqs(cpu, "", mem, "")}}}}
	}
	allocatable := v1.ResourceList{v1.ResourceCPU: resource.MustParse("2"), v1.ResourceMemory: resource.MustParse("1Gi")}
	used := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1500m"), v1.ResourceMemory: resource.MustParse("512Mi")}
	cases := []struct {
		name          string
		pod           *v1.Pod
		podAllocated  *v1.ResourceRequirements
		allocatable   v1.ResourceList
		reason, msg   string
		wantGrantable bool
	}{
		{name: "fits beside the others", pod: pod("500m", "512Mi", nil), allocatable: allocatable, wantGrantable: true},
		{name: "cpu does not fit for now", pod: pod("600m", "100Mi", nil), allocatable: allocatable, reason: v1.PodReasonDeferred,
			msg: "Node didn't have enough resource: cpu, requested: 600, used: 1500, capacity: 2000"},
		{name: "memory does not fit for now", pod: pod("100m", "600Mi", nil), allocatable: allocatable, reason: v1.PodReasonDeferred,
			msg: "Node didn't have enough resource: memory, requested: 629145600, used: 536870912, capacity: 1073741824"},
		{name: "the node does not say", pod: pod("600m", "600Mi", nil), allocatable: nil, wantGrantable: true},
		{name: "pod-level resources changed", pod: pod("100m", "", &v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("200m")}}),
			allocatable: allocatable, reason: v1.PodReasonInfeasible, msg: msgPodLevelResize},
	}
	for _, tc := range cases {
		reason, msg := fitResize(tc.pod, tc.podAllocated, tc.allocatable, used)
		if reason != tc.reason || msg != tc.msg || (reason == "") != tc.wantGrantable {
			t.Errorf("%s: %q %q, want %q %q", tc.name, reason, msg, tc.reason, tc.msg)
		}
	}
}

// TestReportedResources: status.resources is the allocation, with the CPU
// and memory the running cgroup holds in their place.
func TestReportedResources(t *testing.T) {
	eph := resource.MustParse("1Gi")
	allocated := reqs("25m", "35m", "40Mi", "")
	allocated.Requests[v1.ResourceEphemeralStorage] = eph
	cases := []struct {
		name    string
		applied *v1.ResourceRequirements
		want    v1.ResourceRequirements
	}{
		{"not running: the allocation", nil, allocated},
		{"in force", &v1.ResourceRequirements{Requests: reqs("25m", "", "40Mi", "").Requests, Limits: reqs("", "35m", "", "").Limits}, allocated},
		{"a limit not applied yet", func() *v1.ResourceRequirements { r := reqs("20m", "", "35Mi", ""); return &r }(),
			v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("20m"), v1.ResourceMemory: resource.MustParse("35Mi"), v1.ResourceEphemeralStorage: eph}}},
	}
	for _, tc := range cases {
		got := reportedResources(allocated, tc.applied)
		if !equality.Semantic.DeepEqual(*got, tc.want) || got.Limits != nil && len(got.Limits) == 0 {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if applied, ok := appliedOf(&runtime.Container{Labels: map[string]string{labelResources: encodeApplied(allocated)}}); !ok ||
		!equality.Semantic.DeepEqual(applied, reqs("25m", "35m", "40Mi", "")) {
		t.Errorf("label round trip: %v %v, want the CPU and memory of %v", applied, ok, allocated)
	}
}

// TestPlanRestartsResizedContainer: a container killed for a resize starts
// again even under restartPolicy Never, and keeps the pod from completing.
func TestPlanRestartsResizedContainer(t *testing.T) {
	pod := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "c"}}}}
	for _, resized := range []bool{true, false} {
		p := planPod(pod, func(*v1.Container) containerState {
			return containerState{exists: true, exited: true, exitCode: 137, resizeRestart: resized}
		})
		started := len(p.start) == 1 && p.start[0].c.Name == "c"
		if started != resized || p.stopAll == resized {
			t.Errorf("resize restart %v: start %v stopAll %v", resized, started, p.stopAll)
		}
	}
}

type allocatableNode struct {
	fakeNode
	allocatable v1.ResourceList
}

func (n allocatableNode) Allocatable() v1.ResourceList { return n.allocatable }

// TestResizeAdmissionAndStatus follows one pod through a resize as the
// worker sees it: the grant, the status while the cgroup still holds the
// old values and after, a resize deferred because another pod holds the
// room, and the return to the granted values.
func TestResizeAdmissionAndStatus(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	node := allocatableNode{allocatable: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), v1.ResourceMemory: resource.MustParse("1Gi")}}
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", Generation: 1},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: reqs("200m", "", "100Mi", "")}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning},
	}
	other := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "o", Namespace: "ns", UID: "o"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: reqs("500m", "", "", "")}}},
		Status:     v1.PodStatus{Phase: v1.PodRunning},
	}
	m := New(Options{Node: node, Client: fake.NewSimpleClientset(pod), Clock: clock, SyncInterval: time.Minute})
	m.pods[pod.UID], m.pods[other.UID] = pod, other
	w := newWorker(m, pod.UID)
	running := func(applied v1.ResourceRequirements) podContainers {
		return podContainers{"c": {{ID: "c1", State: runtime.StateRunning, StartedAt: clock.Now(),
			Labels: map[string]string{labelAttempt: "0", labelResources: encodeApplied(applied)}}}}
	}
	cs := running(pod.Spec.Containers[0].Resources)
	w.allocate(pod, cs)
	w.admitResize(pod)
	if conds := w.resizeConditions(); len(conds) != 0 {
		t.Fatalf("conditions %v before any resize", conds)
	}

	// Granted: 200m -> 300m fits beside the other pod's 500m.
	resized := pod.DeepCopy()
	resized.Generation = 2
	resized.Spec.Containers[0].Resources = reqs("300m", "400m", "100Mi", "")
	w.admitResize(resized)
	if got := w.resize.allocated["c"]; !equality.Semantic.DeepEqual(got, resized.Spec.Containers[0].Resources) {
		t.Fatalf("allocated %v, want the new spec", got)
	}
	if ip := w.resize.inProgress; ip == nil || ip.ObservedGeneration != 2 {
		t.Fatalf("in progress %v, want the condition at generation 2", ip)
	}
	st := w.status(resized, cs, true, false)
	s := st.ContainerStatuses[0]
	if !equality.Semantic.DeepEqual(s.AllocatedResources, reqs("300m", "", "100Mi", "").Requests) ||
		!equality.Semantic.DeepEqual(*s.Resources, reqs("200m", "", "100Mi", "")) {
		t.Errorf("before actuation: allocated %v resources %v, want 300m allocated and the old 200m in force", s.AllocatedResources, s.Resources)
	}
	if !hasCondition(st, v1.PodResizeInProgress) || st.ObservedGeneration != 2 {
		t.Errorf("before actuation: conditions %v observedGeneration %d, want PodResizeInProgress and 2", st.Conditions, st.ObservedGeneration)
	}
	w.finishResize(resized, nil)
	cs = running(resized.Spec.Containers[0].Resources)
	st = w.status(resized, cs, true, false)
	if s := st.ContainerStatuses[0]; !equality.Semantic.DeepEqual(*s.Resources, resized.Spec.Containers[0].Resources) {
		t.Errorf("after actuation: resources %v, want the new spec", s.Resources)
	}
	if hasCondition(st, v1.PodResizeInProgress) || hasCondition(st, v1.PodResizePending) {
		t.Errorf("after actuation: conditions %v, want no resize condition", st.Conditions)
	}

	// Deferred: 600m does not fit beside 500m on a 1-CPU node.
	greedy := resized.DeepCopy()
	greedy.Generation = 3
	greedy.Spec.Containers[0].Resources = reqs("600m", "700m", "100Mi", "")
	w.admitResize(greedy)
	p := w.resize.pending
	if p == nil || p.Reason != v1.PodReasonDeferred || p.ObservedGeneration != 3 ||
		p.Message != "Node didn't have enough resource: cpu, requested: 600, used: 500, capacity: 1000" {
		t.Fatalf("pending %+v, want Deferred at generation 3 with kubelet's message", p)
	}
	if got := w.resize.allocated["c"]; !equality.Semantic.DeepEqual(got, resized.Spec.Containers[0].Resources) {
		t.Errorf("a deferred resize changed the allocation to %v", got)
	}
	if c := w.allocatedContainer(&greedy.Spec.Containers[0]); !equality.Semantic.DeepEqual(c.Resources, resized.Spec.Containers[0].Resources) {
		t.Errorf("a restart would use %v, not the allocation", c.Resources)
	}
	st = w.status(greedy, cs, true, false)
	if !hasCondition(st, v1.PodResizePending) {
		t.Errorf("conditions %v, want PodResizePending", st.Conditions)
	}

	// The other pod goes: the deferred resize is granted on the next sync.
	m.mu.Lock()
	delete(m.pods, other.UID)
	m.mu.Unlock()
	w.admitResize(greedy)
	if w.resize.pending != nil || !equality.Semantic.DeepEqual(w.resize.allocated["c"], greedy.Spec.Containers[0].Resources) {
		t.Errorf("after room was made: pending %v allocated %v, want the resize granted", w.resize.pending, w.resize.allocated["c"])
	}
}

// TestResizeErrorKeepsInProgress: a resize that could not be applied keeps
// PodResizeInProgress with reason Error and the message, at the generation
// it was granted, until it is applied.
func TestResizeErrorKeepsInProgress(t *testing.T) {
	m := New(Options{Node: fakeNode{}, Clock: clockwork.NewFakeClock(), SyncInterval: time.Minute})
	w := newWorker(m, "u")
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Generation: 4}}
	w.resize.inProgress = &v1.PodCondition{Type: v1.PodResizeInProgress, Status: v1.ConditionTrue, ObservedGeneration: 3}
	w.finishResize(pod, context.DeadlineExceeded)
	ip := w.resize.inProgress
	if ip == nil || ip.Reason != reasonResizeError || ip.Message != context.DeadlineExceeded.Error() || ip.ObservedGeneration != 3 {
		t.Fatalf("in progress %+v, want reason Error with the message at generation 3", ip)
	}
	w.finishResize(pod, nil)
	if w.resize.inProgress != nil {
		t.Errorf("in progress %+v after the resize was applied", w.resize.inProgress)
	}
}

func hasCondition(st v1.PodStatus, t v1.PodConditionType) bool {
	for _, c := range st.Conditions {
		if c.Type == t {
			return true
		}
	}
	return false
}
