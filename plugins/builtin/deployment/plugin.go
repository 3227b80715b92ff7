// Package deployment is the built-in Deployment controller plugin: one
// ReplicaSet per pod template (named by its hash), rolled out with the
// RollingUpdate (maxSurge/maxUnavailable) or Recreate strategy; revisions
// and change-cause kept for `kubectl rollout history|undo`; old revisions
// cleaned up beyond revisionHistoryLimit; pause and resume; Progressing and
// Available conditions with progressDeadlineSeconds; a Deployment scaled
// mid-rollout scales its ReplicaSets proportionally. Its behaviour follows
// kube-controller-manager's deployment controller.
package deployment

import (
	"context"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin deployment`).
const Name = "deployment"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many Deployments are reconciled at once (default 5,
	// as kube-controller-manager's --concurrent-deployment-syncs).
	Workers int `json:"workers"`
	sdk.ClientLimits
}

// ParseConfig reads raw (may be empty) over the defaults and validates it.
func ParseConfig(raw []byte) (Config, error) {
	c := Config{Workers: 5}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return Config{}, fmt.Errorf("plugins.config.%s: %w", Name, err)
	}
	if c.Workers < 1 || c.Workers > 64 {
		return Config{}, fmt.Errorf("plugins.config.%s: %w", Name, sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", c.Workers))
	}
	if err := c.ClientLimits.Validate(); err != nil {
		return Config{}, fmt.Errorf("plugins.config.%s: %w", Name, err)
	}
	return c, nil
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.Plugin{Name: Name, Kind: sdk.KindController, Version: version, ManualReady: true}
	p.Run = func(ctx context.Context, env sdk.Env) error {
		cfg, err := ParseConfig(env.Config)
		if err != nil {
			return err
		}
		env.RESTConfig = cfg.ClientLimits.Apply(env.RESTConfig)
		setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
			c, err := New(cfg, client, factory, env.Logger, clock.RealClock{})
			if err != nil {
				return nil, err
			}
			return c.Run, nil
		}
		return sdk.InformerPlugin(Name, version, setup, informers.WithTransform(Transform)).Run(ctx, env)
	}
	p.Rules = []rbacv1.PolicyRule{
		// update: clearing a deprecated rollbackTo request.
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "watch", "update"}},
		// finalizers: a ReplicaSet's ownerReference blocks the
		// Deployment's deletion, which takes update on its finalizers.
		{APIGroups: []string{"apps"}, Resources: []string{"deployments/status", "deployments/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		// list: the pods of an old ReplicaSet whose status lacks
		// terminatingReplicas (Recreate).
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "update", "patch"}},
	}
	return p
}

// Transform drops managedFields from the cached Deployments and
// ReplicaSets (they are written back whole, so nothing else can go).
func Transform(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}
