// Package announcer is the built-in LoadBalancer announcer, a node plugin
// every agent runs: for each IP in the status of a LoadBalancer Service of
// the built-in class, exactly one healthy node answers ARP for it (so the
// segment sends the IP's traffic to that node, whose service proxy already
// forwards it), chosen by rendezvous hashing over the eligible nodes; on a
// takeover the new node sends gratuitous ARP. It also serves the
// healthCheckNodePort of externalTrafficPolicy: Local Services.
//
// Parts, from pure to effectful: plan.go (who announces what), arp.go (the
// ARP wire format and a raw-socket responder), speaker.go (responders per
// interface), healthcheck.go, and this file's reconcile, one queue key for the whole plan, worked by
// sdk.RunWorkers (loop.go).
package announcer

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "announcer"

const version = "0.1.0"

// Config is the plugin's section of the server configuration.
type Config struct {
	// NodeSelector restricts the announcing nodes to those with these labels;
	// the server sets it from plugins.nodeSelector.announcer, which also
	// decides which agents run the plugin at all.
	NodeSelector map[string]string `json:"nodeSelector"`
	// HealthCheckBindAddress is the address healthCheckNodePort listeners
	// bind; default all addresses.
	HealthCheckBindAddress string `json:"healthCheckBindAddress"`
}

// Plugin returns the announcer: a node plugin only (RunNode).
func Plugin() sdk.Plugin {
	return sdk.Plugin{Name: Name, Kind: sdk.KindCloudProvider, Version: version, ManualReady: true, RunNode: runNode}
}

func runNode(ctx context.Context, env sdk.Env) error {
	var cfg Config
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return err
	}
	if a := cfg.HealthCheckBindAddress; a != "" {
		if _, err := netip.ParseAddr(a); err != nil {
			return sdk.ConfigErrorf("healthCheckBindAddress", "healthCheckBindAddress %q is not an IP address", a)
		}
	}
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimNode))
	defer factory.Shutdown()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &announcer{
		env: env, cfg: cfg, queue: sdk.NewQueue[struct{}]("announcer"),
		services: factory.Core().V1().Services().Lister(),
		slices:   factory.Discovery().V1().EndpointSlices().Lister(),
		nodes:    factory.Core().V1().Nodes().Lister(),
		speaker:  &speaker{log: env.Logger, interfaces: systemInterfaces, regratuitous: 500 * time.Millisecond, responders: map[string]*runningResponder{}},
		health:   &healthChecks{log: env.Logger, addr: cfg.HealthCheckBindAddress, servers: map[int32]*hcServer{}},
	}
	for _, inf := range []cache.SharedIndexInformer{factory.Core().V1().Services().Informer(),
		factory.Discovery().V1().EndpointSlices().Informer(), factory.Core().V1().Nodes().Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { a.poke() }, UpdateFunc: func(any, any) { a.poke() }, DeleteFunc: func(any) { a.poke() },
		}); err != nil {
			return err
		}
	}
	env.NotReady("waiting for informer caches to sync", nil)
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	defer a.speaker.stop()
	defer a.health.stop()
	go a.watchMembers(ctx)
	sdk.RunWorkers(ctx, a.queue, 1, a.reconcile, env.Logger)
	return nil
}

// announcer is one node's running announcer.
type announcer struct {
	env      sdk.Env
	cfg      Config
	queue    workqueue.TypedRateLimitingInterface[struct{}] // one key: the whole plan
	services interface {
		List(labels.Selector) ([]*v1.Service, error)
	}
	slices interface {
		List(labels.Selector) ([]*discoveryv1.EndpointSlice, error)
	}
	nodes interface {
		List(labels.Selector) ([]*v1.Node, error)
	}
	speaker *speaker
	health  *healthChecks

	mu       sync.Mutex
	alive    map[string]bool // the gossip view's latest alive set; nil: every Ready node
	haveView bool            // a view (or its absence) was reported
}

// poke queues a sync of the whole plan.
func (a *announcer) poke() { a.queue.Add(struct{}{}) }
