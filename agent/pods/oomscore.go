package pods

import (
	v1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// OOM score adjustments kubelet gives containers by QoS class.
const (
	oomGuaranteed = -997
	oomBestEffort = 1000
)

// oomScoreAdj is the oom_score_adj of a container's process, by kubelet's
// rule: Guaranteed pods (and system-node-critical ones) last, BestEffort
// first, and a Burstable container in between by the share of the node's
// memory it requests (a pod-level request's part not given to containers
// is shared evenly among them), a sidecar no likelier to be killed than the
// pod's regular container with the smallest request. c carries the
// resources the node allocated it.
func oomScoreAdj(pod *v1.Pod, c *v1.Container, memCapacity int64) int {
	if pod.Spec.PriorityClassName == "system-node-critical" && pod.Spec.Priority != nil && *pod.Spec.Priority >= 2000000000 {
		return oomGuaranteed
	}
	switch pod.Status.QOSClass {
	case v1.PodQOSGuaranteed:
		return oomGuaranteed
	case v1.PodQOSBestEffort:
		return oomBestEffort
	}
	if memCapacity <= 0 {
		return oomBestEffort - 1
	}
	extra := podMemoryPerContainer(pod)
	score := func(req int64) int64 { return 1000 - 1000*(req+extra)/memCapacity }
	adj := score(c.Resources.Requests.Memory().Value())
	if isSidecar(c) && len(pod.Spec.Containers) > 0 {
		smallest := pod.Spec.Containers[0].Resources.Requests.Memory().Value()
		for _, rc := range pod.Spec.Containers[1:] {
			smallest = min(smallest, rc.Resources.Requests.Memory().Value())
		}
		adj = min(adj, score(smallest))
	}
	switch {
	case adj < 1000+oomGuaranteed:
		return 1000 + oomGuaranteed // above any Guaranteed container
	case adj == oomBestEffort:
		return oomBestEffort - 1 // below any BestEffort one
	}
	return int(adj)
}

// podMemoryPerContainer is the part of a pod-level memory request not
// requested by its containers, divided evenly among them.
func podMemoryPerContainer(pod *v1.Pod) int64 {
	if pod.Spec.Resources == nil || pod.Spec.Resources.Requests.Memory().IsZero() {
		return 0
	}
	n := int64(len(pod.Spec.Containers) + len(pod.Spec.InitContainers))
	agg := resourcehelper.AggregateContainerRequests(pod, resourcehelper.PodResourcesOptions{})
	return max(pod.Spec.Resources.Requests.Memory().Value()-agg.Memory().Value(), 0) / n
}
