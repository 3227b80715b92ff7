// Package replicationcontroller is the built-in ReplicationController
// controller plugin: it keeps each ReplicationController's .spec.replicas
// pods running (equality-based selectors). A ReplicationController is
// handled as an older API version of a ReplicaSet: it is converted to that
// shape for the reconciler it shares with the replicaset plugin, and its
// status converted back.
package replicationcontroller

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/replication"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin replicationcontroller`).
const Name = "replicationcontroller"

const version = "0.1.0"

// Kind adapts ReplicationControllers to the shared reconciler.
func Kind() replication.Kind {
	return replication.Kind{
		GVK:       v1.SchemeGroupVersion.WithKind("ReplicationController"),
		Resource:  v1.Resource("replicationcontrollers"),
		Component: "replication-controller",
		Informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Core().V1().ReplicationControllers().Informer()
		},
		View: func(obj any) (*appsv1.ReplicaSet, bool) {
			rc, ok := obj.(*v1.ReplicationController)
			if !ok {
				return nil, false
			}
			return toReplicaSet(rc), true
		},
		Get: func(ctx context.Context, c kubernetes.Interface, namespace, name string) (*appsv1.ReplicaSet, error) {
			rc, err := c.CoreV1().ReplicationControllers(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return toReplicaSet(rc), nil
		},
		UpdateStatus: func(ctx context.Context, c kubernetes.Interface, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
			rc, err := c.CoreV1().ReplicationControllers(rs.Namespace).UpdateStatus(ctx, fromReplicaSet(rs), metav1.UpdateOptions{})
			if err != nil {
				return nil, err
			}
			return toReplicaSet(rc), nil
		},
		// ReplicationControllerStatus has no terminatingReplicas.
		TerminatingReplicas: false,
		// Most clusters have none: no pod cache until one exists.
		Lazy: true,
	}
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	return replication.Plugin(Kind(), Name, version,
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"replicationcontrollers"}, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"replicationcontrollers/status", "replicationcontrollers/finalizers"}, Verbs: []string{"update"}},
	)
}

// toReplicaSet views rc as a ReplicaSet: its map selector becomes
// matchLabels (a nil one selects nothing). The result shares maps and
// slices with rc and is read-only.
func toReplicaSet(rc *v1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: rc.ObjectMeta,
		Spec: appsv1.ReplicaSetSpec{
			Replicas:        rc.Spec.Replicas,
			MinReadySeconds: rc.Spec.MinReadySeconds,
		},
		Status: appsv1.ReplicaSetStatus{
			Replicas:             rc.Status.Replicas,
			FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
			ReadyReplicas:        rc.Status.ReadyReplicas,
			AvailableReplicas:    rc.Status.AvailableReplicas,
			ObservedGeneration:   rc.Status.ObservedGeneration,
		},
	}
	if rc.Spec.Selector != nil {
		rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}
	}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template
	}
	for _, c := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rs
}

// fromReplicaSet turns a view made by toReplicaSet (and changed only in
// its status) back into the ReplicationController to write.
func fromReplicaSet(rs *appsv1.ReplicaSet) *v1.ReplicationController {
	rc := &v1.ReplicationController{
		ObjectMeta: rs.ObjectMeta,
		Spec: v1.ReplicationControllerSpec{
			Replicas:        rs.Spec.Replicas,
			MinReadySeconds: rs.Spec.MinReadySeconds,
			Template:        &rs.Spec.Template,
		},
		Status: v1.ReplicationControllerStatus{
			Replicas:             rs.Status.Replicas,
			FullyLabeledReplicas: rs.Status.FullyLabeledReplicas,
			ReadyReplicas:        rs.Status.ReadyReplicas,
			AvailableReplicas:    rs.Status.AvailableReplicas,
			ObservedGeneration:   rs.Status.ObservedGeneration,
		},
	}
	if rs.Spec.Selector != nil {
		rc.Spec.Selector = rs.Spec.Selector.MatchLabels
	}
	for _, c := range rs.Status.Conditions {
		rc.Status.Conditions = append(rc.Status.Conditions, v1.ReplicationControllerCondition{
			Type: v1.ReplicationControllerConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rc
}
