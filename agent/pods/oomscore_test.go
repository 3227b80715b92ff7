package pods

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
)

// TestOOMScoreAdjIsKubelets: the oom_score_adj a container starts with
// follows kubelet's rule, which the upstream resize specs check after a
// resize restarts a container.
func TestOOMScoreAdjIsKubelets(t *testing.T) {
	const capacity = 8 << 30
	mem := func(q string) v1.ResourceRequirements { return reqs("", "", q, "") }
	burstable := func(containers ...v1.Container) *v1.Pod {
		return &v1.Pod{Spec: v1.PodSpec{Containers: containers}, Status: v1.PodStatus{QOSClass: v1.PodQOSBurstable}}
	}
	always := v1.ContainerRestartPolicyAlways
	cases := []struct {
		name string
		pod  *v1.Pod
		c    v1.Container
		want int
	}{
		{"guaranteed", &v1.Pod{Status: v1.PodStatus{QOSClass: v1.PodQOSGuaranteed}}, v1.Container{}, -997},
		{"best effort", &v1.Pod{Status: v1.PodStatus{QOSClass: v1.PodQOSBestEffort}}, v1.Container{}, 1000},
		{"node critical", &v1.Pod{Spec: v1.PodSpec{PriorityClassName: "system-node-critical", Priority: ptr.To[int32](2000001000)},
			Status: v1.PodStatus{QOSClass: v1.PodQOSBurstable}}, v1.Container{}, -997},
		{"burstable, 1Gi of 8Gi", burstable(), v1.Container{Resources: mem("1Gi")}, 875},
		{"burstable without a memory request", burstable(), v1.Container{Resources: reqs("100m", "", "", "")}, 999},
		{"burstable asking for everything", burstable(), v1.Container{Resources: mem("8Gi")}, 3},
		{"sidecar no likelier than the smallest app", burstable(v1.Container{Name: "app", Resources: mem("2Gi")}),
			v1.Container{Name: "side", RestartPolicy: &always, Resources: mem("1Gi")}, 750},
		{"pod-level request shared", &v1.Pod{Spec: v1.PodSpec{
			Resources:  &v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceMemory: resource.MustParse("3Gi")}},
			Containers: []v1.Container{{Name: "a", Resources: mem("1Gi")}, {Name: "b"}}}, Status: v1.PodStatus{QOSClass: v1.PodQOSBurstable}},
			v1.Container{Name: "a", Resources: mem("1Gi")}, 750},
	}
	for _, tc := range cases {
		if got := oomScoreAdj(tc.pod, &tc.c, capacity); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
