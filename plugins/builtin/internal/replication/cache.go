package replication

import (
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// Index names of the informers' indexers.
const (
	// byController indexes pods by podControllerKey.
	byController = "controller"
	// byOwnerController indexes owners by the UID of their own controller
	// (a Deployment), to find sibling ReplicaSets.
	byOwnerController = "ownerController"
)

// podControllerKey is "namespace/Kind/name/uid" of ref, or "namespace" for
// an orphan: one index lookup finds an owner's pods and the namespace's
// orphans it may adopt.
func podControllerKey(namespace string, ref *metav1.OwnerReference) string {
	if ref == nil {
		return namespace
	}
	return namespace + "/" + ref.Kind + "/" + ref.Name + "/" + string(ref.UID)
}

func indexPodByController(obj any) ([]string, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return nil, nil
	}
	return []string{podControllerKey(p.Namespace, metav1.GetControllerOfNoCopy(p))}, nil
}

func indexByOwnerController(obj any) ([]string, error) {
	m, err := metaOf(obj)
	if err != nil {
		return nil, nil
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return []string{string(ref.UID)}, nil
	}
	return nil, nil
}

func metaOf(obj any) (metav1.Object, error) {
	if m, ok := obj.(metav1.Object); ok {
		return m, nil
	}
	return nil, cache.KeyError{Obj: obj}
}

// Transform keeps in the informer caches only what the reconciler reads:
// owners lose their managedFields; pods keep their identity, labels, owner
// references, deletion and creation times, node, phase, Ready condition,
// restart counts and deletion cost, and nothing else (a pod's spec is most
// of its size).
func Transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		return slimPod(o), nil
	case metav1.Object:
		o.SetManagedFields(nil)
		return obj, nil
	default:
		return obj, nil
	}
}

func slimPod(p *v1.Pod) *v1.Pod {
	s := &v1.Pod{
		TypeMeta: p.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			Labels:            p.Labels,
			OwnerReferences:   p.OwnerReferences,
			CreationTimestamp: p.CreationTimestamp,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   v1.PodSpec{NodeName: p.Spec.NodeName},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	if cost, ok := p.Annotations[pods.DeletionCostAnnotation]; ok {
		s.Annotations = map[string]string{pods.DeletionCostAnnotation: cost}
	}
	if c := pods.ReadyCondition(p); c != nil {
		s.Status.Conditions = []v1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.RestartCount > 0 {
			s.Status.ContainerStatuses = append(s.Status.ContainerStatuses, v1.ContainerStatus{Name: c.Name, RestartCount: c.RestartCount})
		}
	}
	sidecars := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			s.Spec.InitContainers = append(s.Spec.InitContainers, v1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
			sidecars[c.Name] = true
		}
	}
	for _, c := range p.Status.InitContainerStatuses {
		if sidecars[c.Name] && c.RestartCount > 0 {
			s.Status.InitContainerStatuses = append(s.Status.InitContainerStatuses, v1.ContainerStatus{Name: c.Name, RestartCount: c.RestartCount})
		}
	}
	return s
}
