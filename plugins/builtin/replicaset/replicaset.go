// Package replicaset is the built-in ReplicaSet controller plugin: it
// keeps each ReplicaSet's .spec.replicas pods running (set-based
// selectors), with the reconciler it shares with ReplicationControllers.
package replicaset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/replication"
	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin replicaset`).
const Name = "replicaset"

const version = "0.1.0"

// Kind adapts ReplicaSets to the shared reconciler, which works on their
// shape directly.
func Kind() replication.Kind {
	return replication.Kind{
		GVK:       appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Resource:  appsv1.Resource("replicasets"),
		Component: "replicaset-controller",
		Informer: func(f informers.SharedInformerFactory) cache.SharedIndexInformer {
			return f.Apps().V1().ReplicaSets().Informer()
		},
		View: func(obj any) (*appsv1.ReplicaSet, bool) {
			rs, ok := obj.(*appsv1.ReplicaSet)
			return rs, ok
		},
		Get: func(ctx context.Context, c kubernetes.Interface, namespace, name string) (*appsv1.ReplicaSet, error) {
			return c.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
		},
		UpdateStatus: func(ctx context.Context, c kubernetes.Interface, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
			return c.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
		},
		TerminatingReplicas: true,
	}
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	return replication.Plugin(Kind(), Name, version,
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list", "watch"}},
		// finalizers: setting blockOwnerDeletion on a pod's ownerReference
		// needs update on the owner's finalizers.
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"replicasets/status", "replicasets/finalizers"}, Verbs: []string{"update"}},
	)
}
