package agent

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cgroupLimits reads, inside a container, its CPU shares (cgroup v1) or
// weight (v2), its CPU quota and its memory limit, as the upstream resize
// specs read them.
func (c *cluster) cgroupLimits(t *testing.T, ns, pod, container string) (v2 bool, cpuWeight, cpuQuota, memLimit string) {
	t.Helper()
	script := `if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo v2; head -n1 /sys/fs/cgroup/cpu.weight /sys/fs/cgroup/cpu.max /sys/fs/cgroup/memory.max
else echo v1; head -n1 /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes; fi | grep -v '^==>' | grep -v '^$'`
	r := c.server.Kubectl(t, "exec", "-n", ns, pod, "-c", container, "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.ExitCode != 0 || len(lines) != 4 {
		t.Fatalf("reading the cgroup of %s/%s: %s", pod, container, r)
	}
	return lines[0] == "v2", lines[1], lines[2], lines[3]
}

// wantCgroup is what kubelet sets for a CPU request and limit (milli-CPU)
// and a memory limit (bytes) on cgroup v1 or v2.
func wantCgroup(v2 bool, cpuReq, cpuLim, mem int64) (string, string, string) {
	shares := max(cpuReq*1024/1000, 2)
	quota := cpuLim * 100000 / 1000
	if !v2 {
		return strconv.FormatInt(shares, 10), strconv.FormatInt(quota, 10), strconv.FormatInt(mem, 10)
	}
	return strconv.FormatInt(1+((shares-2)*9999)/262142, 10), fmt.Sprintf("%d 100000", quota), strconv.FormatInt(mem, 10)
}

// containerStatusOf is the status of p's container name (zero if none).
func containerStatusOf(p *v1.Pod, name string) v1.ContainerStatus {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == name {
			return s
		}
	}
	return v1.ContainerStatus{}
}

// testInPlaceResize: a running pod's CPU and memory are resized through
// the pods/resize subresource. The container whose policy allows it keeps
// running with new cgroup limits; the one whose memory policy is
// RestartContainer restarts once with them; the status reports the new
// allocatedResources and resources, observedGeneration catches up and no
// resize condition is left.
func (c *cluster) testInPlaceResize(t *testing.T) {
	ns := c.namespace(t, "resize")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: resizable
spec:
  nodeName: `+c.node+`
  terminationGracePeriodSeconds: 1
  containers:
  - name: inplace
    image: `+c.busybox+`
    command: ['sleep', '3600']
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 200m, memory: 64Mi}
  - name: restarts
    image: `+c.busybox+`
    command: ['sleep', '3600']
    resizePolicy:
    - {resourceName: memory, restartPolicy: RestartContainer}
    resources:
      requests: {cpu: 50m, memory: 16Mi}
      limits: {cpu: 100m, memory: 32Mi}
`)
	ready := func(p *v1.Pod) bool { return podCondition(p, v1.PodReady).Status == v1.ConditionTrue }
	before := c.waitPod(t, ns, "resizable", 3*time.Minute, "ready", ready)
	for _, s := range before.Status.ContainerStatuses {
		spec := before.Spec.Containers[0]
		if s.Name == "restarts" {
			spec = before.Spec.Containers[1]
		}
		if s.Resources == nil || !equality.Semantic.DeepEqual(*s.Resources, spec.Resources) || !equality.Semantic.DeepEqual(s.AllocatedResources, spec.Resources.Requests) {
			t.Errorf("%s before the resize: resources %v allocated %v, want the spec's %v", s.Name, s.Resources, s.AllocatedResources, spec.Resources)
		}
	}
	v2, weight, quota, mem := c.cgroupLimits(t, ns, "resizable", "inplace")
	if w, q, m := wantCgroup(v2, 100, 200, 64<<20); weight != w || quota != q || mem != m {
		t.Errorf("inplace created with cgroup %s / %s / %s, want %s / %s / %s", weight, quota, mem, w, q, m)
	}

	patch := `{"spec":{"containers":[
	  {"name":"inplace","resources":{"requests":{"cpu":"150m","memory":"48Mi"},"limits":{"cpu":"300m","memory":"96Mi"}}},
	  {"name":"restarts","resources":{"requests":{"cpu":"50m","memory":"24Mi"},"limits":{"cpu":"100m","memory":"48Mi"}}}]}}`
	patched, err := c.client.CoreV1().Pods(ns).Patch(context.Background(), "resizable", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}, "resize")
	if err != nil {
		t.Fatalf("resizing through pods/resize: %v", err)
	}
	after := c.waitPod(t, ns, "resizable", 2*time.Minute, "resized, ready and without resize conditions", func(p *v1.Pod) bool {
		if p.Status.ObservedGeneration < patched.Generation || !ready(p) {
			return false
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == v1.PodResizePending || cond.Type == v1.PodResizeInProgress {
				return false
			}
		}
		s := containerStatusOf(p, "inplace")
		return s.Resources != nil && s.Resources.Limits.Memory().Value() == 96<<20 && containerStatusOf(p, "restarts").RestartCount == 1
	})
	for i, s := range []v1.ContainerStatus{containerStatusOf(after, "inplace"), containerStatusOf(after, "restarts")} {
		spec := after.Spec.Containers[i].Resources
		if !equality.Semantic.DeepEqual(*s.Resources, spec) || !equality.Semantic.DeepEqual(s.AllocatedResources, spec.Requests) {
			t.Errorf("%s after the resize: resources %v allocated %v, want the new spec %v", s.Name, s.Resources, s.AllocatedResources, spec)
		}
	}
	if old, now := containerStatusOf(before, "inplace"), containerStatusOf(after, "inplace"); now.RestartCount != 0 || now.ContainerID != old.ContainerID {
		t.Errorf("inplace was restarted: %s restarts %d, was %s", now.ContainerID, now.RestartCount, old.ContainerID)
	}
	_, weight, quota, mem = c.cgroupLimits(t, ns, "resizable", "inplace")
	if w, q, m := wantCgroup(v2, 150, 300, 96<<20); weight != w || quota != q || mem != m {
		t.Errorf("inplace resized to cgroup %s / %s / %s, want %s / %s / %s", weight, quota, mem, w, q, m)
	}
	_, _, _, mem = c.cgroupLimits(t, ns, "resizable", "restarts")
	if want := strconv.Itoa(48 << 20); mem != want {
		t.Errorf("restarts has memory limit %s after its restart, want %s", mem, want)
	}
	if got, want := containerStatusOf(after, "inplace").AllocatedResources[v1.ResourceCPU], resource.MustParse("150m"); !got.Equal(want) {
		t.Errorf("inplace allocated cpu %v, want %v", &got, &want)
	}
	// The restarted container's OOM score follows its new memory request
	// (kubelet's Burstable rule), as the upstream specs check.
	node, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	capacity := node.Status.Capacity[v1.ResourceMemory]
	want := 1000 - 1000*(24<<20)/capacity.Value()
	if r := c.server.Kubectl(t, "exec", "-n", ns, "resizable", "-c", "restarts", "--", "cat", "/proc/1/oom_score_adj"); strings.TrimSpace(r.Stdout) != strconv.FormatInt(min(want, 999), 10) {
		t.Errorf("restarts has oom_score_adj %s, want %d", r, min(want, 999))
	}
	c.expectEvent(t, ns, "resizable", "Killing", "Container restarts resize requires restart")
}
