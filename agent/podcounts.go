package agent

import (
	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
)

// podCounts counts the node's pods and containers at scrape time, under
// kubelet's names where kubelet has one (kubelet_running_pods,
// kubelet_running_containers by container_state, kubelet_desired_pods),
// plus the pods by phase, which kubelet leaves to kube-state-metrics.
// It reads the pods the agent runs, with the status it last reported.
type podCounts struct {
	list       func() []*v1.Pod
	running    *prometheus.Desc
	containers *prometheus.Desc
	desired    *prometheus.Desc
	byPhase    *prometheus.Desc
}

func newPodCounts(list func() []*v1.Pod) *podCounts {
	return &podCounts{
		list:    list,
		running: prometheus.NewDesc("kubelet_running_pods", "[ALPHA] Number of pods that have a running pod sandbox", nil, nil),
		containers: prometheus.NewDesc("kubelet_running_containers", "[ALPHA] Number of containers currently running",
			[]string{"container_state"}, nil),
		desired: prometheus.NewDesc("kubelet_desired_pods", "[ALPHA] The number of pods the kubelet is being instructed to run. static is true if the pod is not from the apiserver.",
			[]string{"static"}, nil),
		byPhase: prometheus.NewDesc("keelson_agent_pods_by_phase", "Pods bound to this node by the phase the agent last reported.",
			[]string{"phase"}, nil),
	}
}

func (c *podCounts) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.running
	ch <- c.containers
	ch <- c.desired
	ch <- c.byPhase
}

func (c *podCounts) Collect(ch chan<- prometheus.Metric) {
	t := tallyPods(c.list())
	ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(t.running))
	ch <- prometheus.MustNewConstMetric(c.desired, prometheus.GaugeValue, float64(t.desired), "false")
	for _, s := range containerStates {
		ch <- prometheus.MustNewConstMetric(c.containers, prometheus.GaugeValue, float64(t.containers[s]), s)
	}
	for _, p := range podPhases {
		ch <- prometheus.MustNewConstMetric(c.byPhase, prometheus.GaugeValue, float64(t.phases[p]), string(p))
	}
}

// kubelet's container_state values, and the phases, every one reported
// (zero included) so a series does not vanish when its count drops to 0.
var (
	containerStates = []string{"created", "running", "exited", "unknown"}
	podPhases       = []v1.PodPhase{v1.PodPending, v1.PodRunning, v1.PodSucceeded, v1.PodFailed, v1.PodUnknown}
)

type podTally struct {
	running, desired int
	containers       map[string]int
	phases           map[v1.PodPhase]int
}

// tallyPods counts pods and the containers that exist for them. A pod's
// sandbox runs while any of its containers (init and ephemeral included)
// runs; a waiting container counts as created only once the runtime made
// it (it has an ID), as kubelet counts what the runtime holds.
func tallyPods(pods []*v1.Pod) podTally {
	t := podTally{containers: map[string]int{}, phases: map[v1.PodPhase]int{}}
	for _, p := range pods {
		phase := p.Status.Phase
		if phase == "" {
			phase = v1.PodPending
		}
		t.phases[phase]++
		if phase != v1.PodSucceeded && phase != v1.PodFailed && p.DeletionTimestamp == nil {
			t.desired++
		}
		anyRunning := false
		for _, list := range [][]v1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
			for _, cs := range list {
				state := containerState(cs)
				if state == "" {
					continue
				}
				t.containers[state]++
				anyRunning = anyRunning || state == "running"
			}
		}
		if anyRunning {
			t.running++
		}
	}
	return t
}

func containerState(cs v1.ContainerStatus) string {
	switch {
	case cs.State.Running != nil:
		return "running"
	case cs.State.Terminated != nil:
		return "exited"
	case cs.State.Waiting != nil && cs.ContainerID != "":
		return "created"
	case cs.State.Waiting != nil:
		return "" // no container in the runtime yet
	}
	return "unknown"
}
