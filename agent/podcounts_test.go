package agent

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodCounts(t *testing.T) {
	running := v1.ContainerState{Running: &v1.ContainerStateRunning{}}
	exited := v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0}}
	waiting := v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	now := metav1.Now()
	pods := []*v1.Pod{
		// A running pod: its init container exited, two containers run.
		{Status: v1.PodStatus{Phase: v1.PodRunning,
			InitContainerStatuses: []v1.ContainerStatus{{State: exited, ContainerID: "containerd://i"}},
			ContainerStatuses:     []v1.ContainerStatus{{State: running, ContainerID: "containerd://a"}, {State: running, ContainerID: "containerd://b"}}}},
		// Pending: one container made but not started, one not made yet.
		{Status: v1.PodStatus{Phase: v1.PodPending,
			ContainerStatuses: []v1.ContainerStatus{{State: waiting, ContainerID: "containerd://c"}, {State: waiting}}}},
		// A new pod with no status yet counts as pending.
		{},
		// Finished and terminating pods are no longer desired.
		{Status: v1.PodStatus{Phase: v1.PodSucceeded, ContainerStatuses: []v1.ContainerStatus{{State: exited, ContainerID: "containerd://d"}}}},
		{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: v1.PodStatus{Phase: v1.PodRunning,
			ContainerStatuses: []v1.ContainerStatus{{State: running, ContainerID: "containerd://e"}}}},
	}
	c := newPodCounts(func() []*v1.Pod { return pods })
	want := `
# HELP keelson_agent_pods_by_phase Pods bound to this node by the phase the agent last reported.
# TYPE keelson_agent_pods_by_phase gauge
keelson_agent_pods_by_phase{phase="Failed"} 0
keelson_agent_pods_by_phase{phase="Pending"} 2
keelson_agent_pods_by_phase{phase="Running"} 2
keelson_agent_pods_by_phase{phase="Succeeded"} 1
keelson_agent_pods_by_phase{phase="Unknown"} 0
# HELP kubelet_desired_pods [ALPHA] The number of pods the kubelet is being instructed to run. static is true if the pod is not from the apiserver.
# TYPE kubelet_desired_pods gauge
kubelet_desired_pods{static="false"} 3
# HELP kubelet_running_containers [ALPHA] Number of containers currently running
# TYPE kubelet_running_containers gauge
kubelet_running_containers{container_state="created"} 1
kubelet_running_containers{container_state="exited"} 2
kubelet_running_containers{container_state="running"} 3
kubelet_running_containers{container_state="unknown"} 0
# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox
# TYPE kubelet_running_pods gauge
kubelet_running_pods 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
}
