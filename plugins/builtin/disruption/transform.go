package disruption

import (
	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// transform keeps of each cached object what the controller reads: of a
// pod its identity, labels, controller, deletion, phase and its Ready and
// DisruptionTarget conditions; of a controller its identity, owner,
// replicas and template labels. Budgets are kept whole (they are written
// back) without managedFields.
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *v1.Pod:
		return podTransform(o), nil
	case *v1.ReplicationController:
		s := &v1.ReplicationController{ObjectMeta: controllerMeta(o.ObjectMeta), Spec: v1.ReplicationControllerSpec{Replicas: o.Spec.Replicas}}
		if o.Spec.Template != nil {
			s.Spec.Template = &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: o.Spec.Template.Labels}}
		}
		return s, nil
	case *appsv1.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: controllerMeta(o.ObjectMeta), Spec: appsv1.ReplicaSetSpec{Replicas: o.Spec.Replicas,
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: o.Spec.Template.Labels}}}}, nil
	case *appsv1.Deployment:
		return &appsv1.Deployment{ObjectMeta: controllerMeta(o.ObjectMeta), Spec: appsv1.DeploymentSpec{Replicas: o.Spec.Replicas,
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: o.Spec.Template.Labels}}}}, nil
	case *appsv1.StatefulSet:
		return &appsv1.StatefulSet{ObjectMeta: controllerMeta(o.ObjectMeta), Spec: appsv1.StatefulSetSpec{Replicas: o.Spec.Replicas,
			Template: v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: o.Spec.Template.Labels}}}}, nil
	}
	return sdk.StripManagedFields(obj)
}

func controllerMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, OwnerReferences: m.OwnerReferences}
}

func podTransform(p *v1.Pod) *v1.Pod {
	s := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Generation: p.Generation,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	for _, c := range p.Status.Conditions {
		switch c.Type {
		case v1.PodReady:
			s.Status.Conditions = append(s.Status.Conditions, v1.PodCondition{Type: c.Type, Status: c.Status})
		case v1.DisruptionTarget:
			s.Status.Conditions = append(s.Status.Conditions, v1.PodCondition{Type: c.Type, Status: c.Status,
				Reason: c.Reason, LastTransitionTime: c.LastTransitionTime})
		}
	}
	return s
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
