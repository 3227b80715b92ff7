// Package resourcequota is the built-in plugin that keeps the status of
// every ResourceQuota current, as kube-controller-manager's
// resourcequota controller does: status.hard mirrors spec.hard and
// status.used is the namespace's measured usage of each limited resource.
// kube-apiserver's quota admission charges new objects against status.used
// and refuses a quota whose status is not yet filled, so this plugin is what
// makes quotas usable at all.
//
// Usage is measured with the evaluators kube-apiserver's own quota admission
// uses (k8s.io/apiserver/pkg/quota/v1 and k8s.io/kubernetes/pkg/quota/v1's
// core evaluators): pods (non-terminal pods, requests.* and limits.* of cpu,
// memory, ephemeral-storage and extended resources, the Terminating,
// NotTerminating, BestEffort, NotBestEffort, PriorityClass and
// CrossNamespacePodAffinity scopes), services, persistent volume claims,
// resource claims, and count/<resource>.<group> for every other namespaced
// resource the API serves, custom resources included. Caches are started
// only for resources some quota limits, and pods are cached without the
// fields no evaluator reads.
package resourcequota

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "resourcequota"

// Config is the plugin's config section.
type Config struct {
	// Workers is how many quotas are synced at once (default 5, as
	// kube-controller-manager's --concurrent-resource-quota-syncs).
	Workers int `json:"workers"`
	// ResyncPeriod is how often every quota is recalculated in full, which
	// corrects charges admission made for objects that were then never
	// stored (default 5m, as --resource-quota-sync-period).
	ResyncPeriod metav1.Duration `json:"resyncPeriod"`
	// DiscoveryPeriod is how often the API's resources are rediscovered, so
	// count/<resource>.<group> of a new custom resource is measured
	// (default 30s, as upstream's quota monitor).
	DiscoveryPeriod metav1.Duration `json:"discoveryPeriod"`
}

// DefaultConfig returns the defaults of every field.
func DefaultConfig() Config {
	return Config{Workers: 5, ResyncPeriod: metav1.Duration{Duration: 5 * time.Minute},
		DiscoveryPeriod: metav1.Duration{Duration: 30 * time.Second}}
}

// Validate names the first bad field and how to fix it.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1:
		return fmt.Errorf("plugin %s config: workers is %d: set it to 1 or more", Name, c.Workers)
	case c.ResyncPeriod.Duration < time.Second:
		return fmt.Errorf("plugin %s config: resyncPeriod is %s: set it to 1s or more (e.g. \"5m\")", Name, c.ResyncPeriod.Duration)
	case c.DiscoveryPeriod.Duration < time.Second:
		return fmt.Errorf("plugin %s config: discoveryPeriod is %s: set it to 1s or more (e.g. \"30s\")", Name, c.DiscoveryPeriod.Duration)
	}
	return nil
}

// trigger is what the plugin's caches serve: without any
// ResourceQuotas it has nothing to do, so it keeps no cache (of every
// pod among others) until one is created.
var trigger = sdk.Trigger{Resource: corev1.SchemeGroupVersion.WithResource("resourcequotas"), What: "ResourceQuotas"}

// Plugin returns the resourcequota plugin.
func Plugin() sdk.Plugin {
	p := sdk.LazyInformerPlugin(Name, "0.1.0", trigger, setup, informers.WithTransform(Transform))
	p.Rules = []rbacv1.PolicyRule{
		// Like upstream's resourcequota-controller role: usage of any
		// resource is counted from a cache of it.
		{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"resourcequotas/status"}, Verbs: []string{"update"}},
		sdk.EventRule,
	}
	return p
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	meta, err := metadata.NewForConfig(env.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("building the metadata client: %w", err)
	}
	c, err := newController(cfg, client, f, meta, env.Logger)
	if err != nil {
		return nil, err
	}
	return c.run, nil
}
