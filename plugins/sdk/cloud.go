package sdk

// Cloud providers: ServeCloudProvider runs kube-cloud-controller-manager's
// controllers around a k8s.io/cloud-provider Interface.
//
// The controllers are k8s.io/cloud-provider's own packages
// (controllers/node, controllers/nodelifecycle, controllers/service,
// controllers/route), reused rather than rewritten: they are the
// Interface's contract. Every out-of-tree provider is written and tested
// against exactly their call order, retries and status handling (when
// EnsureLoadBalancer is called rather than UpdateLoadBalancer, which nodes
// it is given, when a Node is deleted because InstanceExists said false,
// the load-balancer-cleanup finalizer), so a provider ported to Keelson
// behaves as it does under upstream's cloud-controller-manager only if the
// same code drives it. What is Keelson's own here is the process around
// them: the plugin identity and its least-privilege rules, one shared and
// trimmed informer cache, readiness over the plugin protocol, klog routed
// into the plugin's structured log, and no leader election (the host runs
// one instance, fenced by raft term).

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cloudprovider "k8s.io/cloud-provider"
	nodecontroller "k8s.io/cloud-provider/controllers/node"
	nodelifecycle "k8s.io/cloud-provider/controllers/nodelifecycle"
	routecontroller "k8s.io/cloud-provider/controllers/route"
	servicecontroller "k8s.io/cloud-provider/controllers/service"
	controllersmetrics "k8s.io/component-base/metrics/prometheus/controllers"
	"k8s.io/klog/v2"
)

// CloudSetup builds the provider. It may register informers on factory
// (Services, Nodes: the controllers use the same ones, so a provider that
// reads them adds no second cache); they are started after it returns.
// env.Config is the plugin's configuration section.
type CloudSetup func(ctx context.Context, env Env, client kubernetes.Interface,
	factory informers.SharedInformerFactory) (cloudprovider.Interface, error)

// CloudOptions tunes the controllers; the zero value is
// cloud-controller-manager's defaults.
type CloudOptions struct {
	// ClusterName is passed to the provider's LoadBalancer and Routes calls
	// (--cluster-name); default "kubernetes".
	ClusterName string
	// ClusterCIDRs are the pod ranges the route controller creates routes
	// for (--cluster-cidr). Without them the route controller does not
	// run, as upstream's does not without --allocate-node-cidrs.
	ClusterCIDRs []*net.IPNet
	// NodeStatusUpdateFrequency is how often every initialised Node's
	// addresses are re-read from the cloud (default 5m).
	NodeStatusUpdateFrequency time.Duration
	// NodeMonitorPeriod is how often the node-lifecycle controller asks the
	// cloud whether each Node's instance still exists (default 5s).
	NodeMonitorPeriod time.Duration
	// RouteReconcilePeriod is how often routes are reconciled (default 10s).
	RouteReconcilePeriod time.Duration
	// ServiceWorkers is how many Services are synced at once (default 1,
	// as --concurrent-service-syncs).
	ServiceWorkers int
	// NodeWorkers is how many Nodes are initialised at once (default 1).
	NodeWorkers int
}

func (o CloudOptions) withDefaults() CloudOptions {
	if o.ClusterName == "" {
		o.ClusterName = "kubernetes"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.NodeStatusUpdateFrequency, 5*time.Minute)
	def(&o.NodeMonitorPeriod, 5*time.Second)
	def(&o.RouteReconcilePeriod, 10*time.Second)
	if o.ServiceWorkers < 1 {
		o.ServiceWorkers = 1
	}
	if o.NodeWorkers < 1 {
		o.NodeWorkers = 1
	}
	return o
}

// CloudRules are the API permissions the cloud controllers use, no more:
// Nodes (initialised, their status and taints patched, deleted when their
// instance is gone), Services and their status (load balancers and the
// cleanup finalizer), and Events.
var CloudRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"nodes/status"}, Verbs: []string{"patch", "update"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "patch", "update"}},
	{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"patch", "update"}},
	EventRule,
}

// ServeCloudProvider serves a cloud provider: an existing out-of-tree
// provider's main becomes
//
//	sdk.ServeCloudProvider(sdk.Plugin{Name: "mycloud", Version: "1.0.0"},
//		func(ctx context.Context, env sdk.Env, _ kubernetes.Interface, _ informers.SharedInformerFactory) (cloudprovider.Interface, error) {
//			return mycloud.New(bytes.NewReader(env.Config))
//		}, sdk.CloudOptions{})
func ServeCloudProvider(p Plugin, setup CloudSetup, opts CloudOptions) {
	Serve(CloudPlugin(p, setup, opts))
}

// CloudPlugin returns p as a cloud-provider plugin: Kind
// KindCloudProvider, Rules CloudRules unless p sets its own, and a Run that
// builds the provider with setup and runs the cloud node, node-lifecycle,
// service and route controllers the provider supports. p.Run is replaced.
func CloudPlugin(p Plugin, setup CloudSetup, opts CloudOptions) Plugin {
	p.Kind = KindCloudProvider
	p.ManualReady = true
	if len(p.Rules) == 0 {
		p.Rules = CloudRules
	}
	opts = opts.withDefaults()
	p.Run = func(ctx context.Context, env Env) error {
		klogOnce.Do(func() { klog.SetSlogLogger(env.Logger) })
		return runInformers(ctx, env, func(ctx context.Context, env Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
			cloud, err := setup(ctx, env, client, factory)
			if err != nil {
				return nil, err
			}
			if cloud == nil {
				return nil, errors.New("the cloud setup returned no provider")
			}
			cloud.Initialize(clientBuilder{env.RESTConfig}, ctx.Done())
			runs, err := cloudControllers(cloud, client, factory, opts, env)
			if err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { return runAll(ctx, runs) }, nil
		}, []informers.SharedInformerOption{informers.WithTransform(StripManagedFields)})
	}
	return p
}

// klog is process-wide; a plugin process serves one plugin.
var klogOnce sync.Once

// cloudControllers builds the controllers the provider supports, each as
// a function that runs until ctx ends. Their informers are registered on
// factory here, before it starts.
func cloudControllers(cloud cloudprovider.Interface, client kubernetes.Interface, factory informers.SharedInformerFactory,
	o CloudOptions, env Env) ([]func(context.Context), error) {
	metrics := controllersmetrics.NewControllerManagerMetrics("keelson-cloud-" + cloud.ProviderName())
	nodes := factory.Core().V1().Nodes()
	var runs []func(context.Context)
	_, v1ok := cloud.Instances()
	_, v2ok := cloud.InstancesV2()
	if v1ok || v2ok {
		nc, err := nodecontroller.NewCloudNodeController(nodes, client, cloud, o.NodeStatusUpdateFrequency, int32(o.NodeWorkers), 1)
		if err != nil {
			return nil, fmt.Errorf("cloud-node-controller: %w", err)
		}
		lc, err := nodelifecycle.NewCloudNodeLifecycleController(nodes, client, cloud, o.NodeMonitorPeriod, 1)
		if err != nil {
			return nil, fmt.Errorf("cloud-node-lifecycle-controller: %w", err)
		}
		runs = append(runs, func(ctx context.Context) { nc.RunWithContext(ctx, metrics) },
			func(ctx context.Context) { lc.Run(ctx, metrics) })
	} else {
		env.Logger.Info("cloud provider has no instances: cloud-node and cloud-node-lifecycle controllers not run")
	}
	if _, ok := cloud.LoadBalancer(); ok {
		sc, err := servicecontroller.New(cloud, client, factory.Core().V1().Services(), nodes, o.ClusterName, utilfeature.DefaultFeatureGate)
		if err != nil {
			return nil, fmt.Errorf("service-lb-controller: %w", err)
		}
		runs = append(runs, func(ctx context.Context) { sc.Run(ctx, o.ServiceWorkers, metrics) })
	} else {
		env.Logger.Info("cloud provider has no load balancers: service-lb-controller not run")
	}
	if routes, ok := cloud.Routes(); ok && len(o.ClusterCIDRs) > 0 {
		rc, err := routecontroller.New(routes, client, nodes, o.ClusterName, o.ClusterCIDRs)
		if err != nil {
			return nil, fmt.Errorf("node-route-controller: %w", err)
		}
		runs = append(runs, func(ctx context.Context) { rc.Run(ctx, o.RouteReconcilePeriod, metrics) })
	} else {
		env.Logger.Info("node-route-controller not run: it needs a provider with routes and CloudOptions.ClusterCIDRs", "routes", ok)
	}
	if len(runs) == 0 {
		return nil, errors.New("the cloud provider supports neither instances, load balancers nor routes: nothing to run")
	}
	return runs, nil
}

// runAll runs each function until ctx ends and waits for all of them.
func runAll(ctx context.Context, runs []func(context.Context)) error {
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// clientBuilder gives the provider's Initialize clients with the plugin's
// own identity: a plugin has one identity, whatever name is asked for.
type clientBuilder struct{ cfg *rest.Config }

func (b clientBuilder) Config(name string) (*rest.Config, error) {
	c := rest.CopyConfig(b.cfg)
	c.UserAgent = rest.DefaultKubernetesUserAgent() + "/" + name
	return c, nil
}

func (b clientBuilder) ConfigOrDie(name string) *rest.Config {
	c, _ := b.Config(name)
	return c
}

func (b clientBuilder) Client(name string) (kubernetes.Interface, error) {
	c, _ := b.Config(name)
	return kubernetes.NewForConfig(c)
}

func (b clientBuilder) ClientOrDie(name string) kubernetes.Interface {
	c, err := b.Client(name)
	if err != nil {
		// The config came from the host and already built the plugin's own
		// client: this cannot fail on input the provider controls.
		panic(fmt.Sprintf("sdk: building the cloud provider's client: %v", err))
	}
	return c
}
