package replication

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Plugin is the built-in plugin name that reconciles kind, with kindRules
// (access to the owner resource) added to what every replication
// controller needs on pods and events.
func Plugin(kind Kind, name, version string, kindRules ...rbacv1.PolicyRule) sdk.Plugin {
	return sdk.Plugin{
		Name:        name,
		Kind:        sdk.KindController,
		Version:     version,
		ManualReady: true,
		Rules:       append(kindRules, PodRules()...),
		Run: func(ctx context.Context, env sdk.Env) error {
			cfg, err := ParseConfig(name, env.Config)
			if err != nil {
				return err
			}
			env.RESTConfig = cfg.ClientLimits.Apply(env.RESTConfig)
			setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
				c, err := New(kind, cfg, client, factory, env.Logger, clock.RealClock{})
				if err != nil {
					return nil, err
				}
				return c.Run, nil
			}
			if kind.Lazy {
				t := sdk.Trigger{Resource: kind.GVK.GroupVersion().WithResource(kind.Resource.Resource), What: kind.GVK.Kind + "s"}
				return sdk.LazyInformerPlugin(name, version, t, setup, informers.WithTransform(Transform)).Run(ctx, env)
			}
			return sdk.InformerPlugin(name, version, setup, informers.WithTransform(Transform)).Run(ctx, env)
		},
	}
}

// PodRules are the permissions on pods and events that managing replicas
// takes: watch pods, create and delete them, patch their ownerReferences,
// and record Events.
func PodRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch", "create", "delete", "patch"}},
		EventRules(),
	}
}

// EventRules let a controller record Events (created, then updated or
// patched when they repeat).
func EventRules() rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "update", "patch"}}
}
