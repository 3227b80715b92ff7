// Package horizontalpodautoscaler is the built-in horizontal pod autoscaler
// plugin: for every autoscaling/v2 HorizontalPodAutoscaler it reads the
// target's /scale subresource (any kind that has one: Deployments,
// ReplicaSets, StatefulSets, ReplicationControllers, custom resources),
// computes a replica count from the HPA's metrics (Resource and
// ContainerResource from metrics.k8s.io; Pods and Object from
// custom.metrics.k8s.io; External from external.metrics.k8s.io),
// stabilizes and limits it (the downscale stabilization window, or the
// HPA's behavior policies) and writes it to the scale, with the
// conditions and events kube-controller-manager's HPA controller writes.
//
// The package reads from pure to effectful: replicas.go and usage.go (the
// replica calculator over pods and metric values), behavior.go (the
// recommendation history and scaling rules), metricspec.go (one metric
// spec to a proposal and a status), zero.go (scaling to and from zero),
// metrics.go (the metrics APIs), reconcile.go (one HPA sync and its
// writes).
package horizontalpodautoscaler

import (
	"context"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	resourceclient "k8s.io/metrics/pkg/client/clientset/versioned"
	customclient "k8s.io/metrics/pkg/client/custom_metrics"
	externalclient "k8s.io/metrics/pkg/client/external_metrics"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin horizontalpodautoscaler`).
const Name = "horizontalpodautoscaler"

const (
	version = "0.1.0"
	// component is the event source upstream's HPA controller uses.
	component = "horizontal-pod-autoscaler"
)

// Config is the plugin's configuration section. Every field has the
// default of the kube-controller-manager flag named beside it.
type Config struct {
	// Workers is how many HPAs are synced at once (default 5,
	// --concurrent-horizontal-pod-autoscaler-syncs).
	Workers int `json:"workers"`
	// SyncPeriod is how often every HPA is synced (default 15s,
	// --horizontal-pod-autoscaler-sync-period).
	SyncPeriod metav1.Duration `json:"syncPeriod"`
	// Tolerance is the ratio of current to desired metric within which
	// nothing is scaled (default 0.1, --horizontal-pod-autoscaler-tolerance);
	// an HPA's behavior.scaleUp/scaleDown.tolerance overrides it.
	Tolerance float64 `json:"tolerance"`
	// DownscaleStabilization is how far back the highest recommendation is
	// kept before scaling down (default 5m,
	// --horizontal-pod-autoscaler-downscale-stabilization); an HPA's
	// behavior.scaleDown.stabilizationWindowSeconds overrides it.
	DownscaleStabilization metav1.Duration `json:"downscaleStabilization"`
	// CPUInitializationPeriod is how long after a pod starts its CPU
	// samples may be skipped as start-up noise (default 5m,
	// --horizontal-pod-autoscaler-cpu-initialization-period).
	CPUInitializationPeriod metav1.Duration `json:"cpuInitializationPeriod"`
	// InitialReadinessDelay is how long after a pod starts a readiness
	// change is taken as its initial readiness (default 30s,
	// --horizontal-pod-autoscaler-initial-readiness-delay).
	InitialReadinessDelay metav1.Duration `json:"initialReadinessDelay"`
}

// DefaultConfig returns the defaults of every field.
func DefaultConfig() Config {
	return Config{
		Workers:                 5,
		SyncPeriod:              metav1.Duration{Duration: 15 * time.Second},
		Tolerance:               0.1,
		DownscaleStabilization:  metav1.Duration{Duration: 5 * time.Minute},
		CPUInitializationPeriod: metav1.Duration{Duration: 5 * time.Minute},
		InitialReadinessDelay:   metav1.Duration{Duration: 30 * time.Second},
	}
}

// Validate names the first bad field and how to fix it.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 64:
		return sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", c.Workers)
	case c.SyncPeriod.Duration < time.Second:
		return sdk.ConfigErrorf("syncPeriod", "syncPeriod is %s: set it to 1s or more (e.g. \"15s\")", c.SyncPeriod.Duration)
	case c.Tolerance < 0 || c.Tolerance >= 1:
		return sdk.ConfigErrorf("tolerance", "tolerance is %v: set it to a ratio from 0 up to (not including) 1 (e.g. 0.1)", c.Tolerance)
	case c.DownscaleStabilization.Duration < 0:
		return sdk.ConfigErrorf("downscaleStabilization", "downscaleStabilization is %s: set it to 0s or more (e.g. \"5m\")", c.DownscaleStabilization.Duration)
	case c.CPUInitializationPeriod.Duration < 0:
		return sdk.ConfigErrorf("cpuInitializationPeriod", "cpuInitializationPeriod is %s: set it to 0s or more (e.g. \"5m\")", c.CPUInitializationPeriod.Duration)
	case c.InitialReadinessDelay.Duration < 0:
		return sdk.ConfigErrorf("initialReadinessDelay", "initialReadinessDelay is %s: set it to 0s or more (e.g. \"30s\")", c.InitialReadinessDelay.Duration)
	}
	return nil
}

// trigger is what the plugin's caches serve: without any
// HorizontalPodAutoscalers it has nothing to do, so it keeps no cache (of every
// pod among others) until one is created.
var trigger = sdk.Trigger{Resource: autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers"), What: "HorizontalPodAutoscalers"}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.LazyInformerPlugin(Name, version, trigger, setup, informers.WithTransform(transform))
	// Upstream's horizontal-pod-autoscaler role.
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"autoscaling"}, Resources: []string{"horizontalpodautoscalers/status"}, Verbs: []string{"update"}},
		{APIGroups: []string{"*"}, Resources: []string{"*/scale"}, Verbs: []string{"get", "update"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"metrics.k8s.io"}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{"custom.metrics.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"external.metrics.k8s.io"}, Resources: []string{"*"}, Verbs: []string{"list"}},
		sdk.EventRule,
	}
	return p
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	targets, metrics, invalidate, err := apiClients(env.RESTConfig)
	if err != nil {
		return nil, err
	}
	c, err := newController(cfg, client, f, targets, metrics, sdk.NewEventRecorder(ctx, client, component), clock.RealClock{}, env.Logger)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		// The custom metrics API's version is rediscovered every sync
		// period, as kube-controller-manager does, so an adapter installed
		// later is found.
		go customclient.PeriodicallyInvalidate(invalidate, cfg.SyncPeriod.Duration, ctx.Done())
		c.run(ctx, cfg.Workers)
		return nil
	}, nil
}

// apiClients builds the scale client (kinds resolved through discovery)
// and the three metrics APIs' clients.
func apiClients(cfg *rest.Config) (*scaleTargets, *apiMetrics, customclient.AvailableAPIsGetter, error) {
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("building discovery client: %w", err)
	}
	cached := memory.NewMemCacheClient(disco)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(rest.CopyConfig(cfg), mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("building scale client: %w", err)
	}
	resource, err := resourceclient.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("building metrics.k8s.io client: %w", err)
	}
	external, err := externalclient.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("building external.metrics.k8s.io client: %w", err)
	}
	apis := customclient.NewAvailableAPIsGetter(disco)
	metrics := &apiMetrics{
		resource: resource.MetricsV1beta1(),
		custom:   customclient.NewForConfig(rest.CopyConfig(cfg), mapper, apis),
		external: external,
	}
	return &scaleTargets{mapper: mapper, scales: scales, reset: mapper.Reset}, metrics, apis, nil
}
