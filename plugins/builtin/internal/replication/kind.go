// Package replication is the reconciler shared by the ReplicaSet and
// ReplicationController plugins: it keeps .spec.replicas active pods that
// match an owner's selector, adopts matching orphans, releases pods whose
// labels stopped matching, picks which pods to delete on scale-down as
// kube-controller-manager ranks them, creates in bounded slow-start bursts
// guarded by expectations, and maintains the owner's status.
//
// It works on the apps/v1 ReplicaSet shape; a Kind converts the owner's own
// API type to and from that shape (a ReplicationController is an older
// ReplicaSet with an equality-based selector and no terminatingReplicas).
package replication

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// Kind adapts one owner API kind to the reconciler.
type Kind struct {
	// GVK is stamped into the ownerReferences of the pods and names the
	// owner in Events.
	GVK schema.GroupVersionKind
	// Resource is the owner's API resource ("replicasets").
	Resource schema.GroupResource
	// Component is the Events' source ("replicaset-controller").
	Component string
	// Informer returns the owners' shared informer from f.
	Informer func(f informers.SharedInformerFactory) cache.SharedIndexInformer
	// View returns a cached owner in the ReplicaSet shape. The result is
	// shared with the cache (or freshly converted) and must not be modified.
	View func(obj any) (*appsv1.ReplicaSet, bool)
	// Get reads the owner from the API server, bypassing the cache.
	Get func(ctx context.Context, c kubernetes.Interface, namespace, name string) (*appsv1.ReplicaSet, error)
	// UpdateStatus writes rs.Status through the owner's status
	// subresource; rs carries the resourceVersion it was read at.
	UpdateStatus func(ctx context.Context, c kubernetes.Interface, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error)
	// TerminatingReplicas makes status report pods being deleted
	// (.status.terminatingReplicas exists for ReplicaSets only).
	TerminatingReplicas bool
	// Lazy keeps the plugin's caches (every pod) only while an owner of
	// this kind exists (sdk.LazyInformerPlugin): for a kind most clusters
	// never use.
	Lazy bool
}

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many owners are reconciled at once (default 5, as
	// kube-controller-manager's --concurrent-replicaset-syncs).
	Workers int `json:"workers"`
	// BurstReplicas caps the pods created or deleted for one owner in one
	// sync (default 500, as upstream); the rest follow once the informer
	// has seen these.
	BurstReplicas int `json:"burstReplicas"`
	sdk.ClientLimits
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config { return Config{Workers: 5, BurstReplicas: 500} }

// ParseConfig reads raw (may be empty) over the defaults and validates it.
func ParseConfig(plugin string, raw []byte) (Config, error) {
	c := DefaultConfig()
	err := sdk.DecodeConfig(raw, &c)
	switch {
	case err != nil:
	case c.Workers < 1 || c.Workers > 64:
		err = sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", c.Workers)
	case c.BurstReplicas < 1:
		err = sdk.ConfigErrorf("burstReplicas", "burstReplicas is %d: set it to at least 1", c.BurstReplicas)
	default:
		err = c.ClientLimits.Validate()
	}
	if err != nil {
		return Config{}, fmt.Errorf("plugins.config.%s: %w", plugin, err)
	}
	return c, nil
}
