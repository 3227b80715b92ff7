package cluster

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
)

// PodInfo is a pod with what the scheduler derives from it once: its
// requests and its affinity terms parsed into selectors. It is immutable
// after NewPodInfo; a changed pod gets a new PodInfo.
type PodInfo struct {
	Pod      *v1.Pod
	Priority int32
	// Requests is what the pod takes from its node's allocatable.
	Requests Resources
	// NonZeroCPU and NonZeroMemory are the requests with upstream's defaults
	// for containers that set none; they only weigh in scoring.
	NonZeroCPU, NonZeroMemory int64
	// HostPorts are the container ports bound on the node (hostPort > 0).
	HostPorts []v1.ContainerPort

	RequiredAffinity      []AffinityTerm
	RequiredAntiAffinity  []AffinityTerm
	PreferredAffinity     []WeightedAffinityTerm
	PreferredAntiAffinity []WeightedAffinityTerm

	// ParseErr is set when a label selector in the pod's affinity does not
	// parse (the API server validates them, so only a corrupt object gets
	// here); the pod is then unschedulable with this error.
	ParseErr error
}

// AffinityTerm is a pod (anti-)affinity term with its selectors parsed.
type AffinityTerm struct {
	Namespaces        sets.Set[string]
	Selector          labels.Selector
	TopologyKey       string
	NamespaceSelector labels.Selector
}

// WeightedAffinityTerm is a preferred term.
type WeightedAffinityTerm struct {
	AffinityTerm
	Weight int32
}

// Matches reports whether pod, in a namespace labelled nsLabels, is selected
// by the term.
func (t *AffinityTerm) Matches(pod *v1.Pod, nsLabels labels.Set) bool {
	if t.Namespaces.Has(pod.Namespace) || t.NamespaceSelector.Matches(nsLabels) {
		return t.Selector.Matches(labels.Set(pod.Labels))
	}
	return false
}

// NewPodInfo derives a PodInfo from pod, which must not be modified
// afterwards.
func NewPodInfo(pod *v1.Pod) *PodInfo {
	pi := &PodInfo{Pod: pod, Priority: corev1helpers.PodPriority(pod)}
	pi.Requests, pi.NonZeroCPU, pi.NonZeroMemory = podRequests(pod)
	pi.HostPorts = hostPorts(pod)
	if a := pod.Spec.Affinity; a != nil {
		var errs []error
		if a.PodAffinity != nil {
			pi.RequiredAffinity = affinityTerms(pod, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, &errs)
			pi.PreferredAffinity = weightedTerms(pod, a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution, &errs)
		}
		if a.PodAntiAffinity != nil {
			pi.RequiredAntiAffinity = affinityTerms(pod, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, &errs)
			pi.PreferredAntiAffinity = weightedTerms(pod, a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, &errs)
		}
		if len(errs) > 0 {
			pi.ParseErr = fmt.Errorf("parsing the pod's affinity: %w", errs[0])
		}
	}
	return pi
}

// HasAffinity reports whether the pod has any inter-pod (anti-)affinity.
func (pi *PodInfo) HasAffinity() bool {
	a := pi.Pod.Spec.Affinity
	return a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil)
}

// Key is namespace/name, for logs.
func (pi *PodInfo) Key() string { return pi.Pod.Namespace + "/" + pi.Pod.Name }

func affinityTerms(pod *v1.Pod, terms []v1.PodAffinityTerm, errs *[]error) []AffinityTerm {
	if len(terms) == 0 {
		return nil
	}
	out := make([]AffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i])
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		out = append(out, t)
	}
	return out
}

func weightedTerms(pod *v1.Pod, terms []v1.WeightedPodAffinityTerm, errs *[]error) []WeightedAffinityTerm {
	if len(terms) == 0 {
		return nil
	}
	out := make([]WeightedAffinityTerm, 0, len(terms))
	for i := range terms {
		t, err := NewAffinityTerm(pod, &terms[i].PodAffinityTerm)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		out = append(out, WeightedAffinityTerm{AffinityTerm: t, Weight: terms[i].Weight})
	}
	return out
}

// NewAffinityTerm parses term of pod. A term naming neither namespaces nor
// a namespace selector applies to the pod's own namespace; a nil namespace
// selector selects no namespace, an empty one every namespace.
func NewAffinityTerm(pod *v1.Pod, term *v1.PodAffinityTerm) (AffinityTerm, error) {
	sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	if err != nil {
		return AffinityTerm{}, fmt.Errorf("labelSelector: %w", err)
	}
	nsSel, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
	if err != nil {
		return AffinityTerm{}, fmt.Errorf("namespaceSelector: %w", err)
	}
	ns := sets.New[string]()
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		ns.Insert(pod.Namespace)
	} else {
		ns.Insert(term.Namespaces...)
	}
	return AffinityTerm{Namespaces: ns, Selector: sel, TopologyKey: term.TopologyKey, NamespaceSelector: nsSel}, nil
}

// hostPorts lists the ports a pod binds on its node: those of its
// containers and of its sidecars (restartable init containers, which run
// for the pod's whole life).
func hostPorts(pod *v1.Pod) []v1.ContainerPort {
	var ports []v1.ContainerPort
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy == nil || *c.RestartPolicy != v1.ContainerRestartPolicyAlways {
			continue
		}
		for _, p := range c.Ports {
			if p.HostPort > 0 {
				ports = append(ports, p)
			}
		}
	}
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			if p.HostPort > 0 {
				ports = append(ports, p)
			}
		}
	}
	return ports
}
