// Package localcloud is the built-in bare-metal cloud provider plugin
// (`local`), served by sdk.CloudPlugin, so k8s.io/cloud-provider's own
// controllers drive it. It gives LoadBalancer Services addresses as k3s's
// servicelb and MetalLB's layer-2 IPAM do: from the address pools of the
// server configuration (loadBalancer.pools), or, with no pool, the ready
// nodes' own addresses. It only assigns addresses and writes them to the
// Service's status (ipMode VIP); the node agents' service proxy accepts
// traffic for them, and announcing pool addresses on the network (ARP/NDP)
// is a separate node plugin's work. Instances are the Nodes themselves:
// provider ID local://NAME, zone and region from the node's labels.
//
// Assignments are derived from the Services' statuses, never from memory
// alone, so a new leader's plugin continues where the old one stopped and
// never gives one address to two Services (the older Service keeps a
// contested one).
package localcloud

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	cloudprovider "k8s.io/cloud-provider"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin localcloud`).
const Name = "localcloud"

const version = "0.1.0"

// Config is the plugin's configuration section; the server fills pools
// from its loadBalancer.pools.
type Config struct {
	// Pools are the address pools, tried in order. Empty: LoadBalancer
	// Services get the ready nodes' addresses.
	Pools []PoolConfig `json:"pools"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.CloudPlugin(sdk.Plugin{Name: Name, Version: version}, nil, sdk.CloudOptions{})
	p.Run = func(ctx context.Context, env sdk.Env) error {
		var cfg Config
		if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
			return fmt.Errorf("plugin %s: %w", Name, err)
		}
		pools, err := parsePools(cfg.Pools)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", Name, sdk.ConfigErrorf("pools", "%v", err))
		}
		inner := sdk.CloudPlugin(sdk.Plugin{Name: Name, Version: version}, setup(pools), sdk.CloudOptions{})
		return inner.Run(ctx, env)
	}
	return p
}

// setup builds the provider on the SDK's informers.
func setup(pools []pool) sdk.CloudSetup {
	return func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (cloudprovider.Interface, error) {
		svcInf, nodeInf := factory.Core().V1().Services(), factory.Core().V1().Nodes()
		p := &Provider{client: client, services: svcInf.Lister(), nodes: nodeInf.Lister(), pools: pools,
			logger: env.Logger, reserved: map[types.UID]holder{}}
		if len(pools) == 0 {
			env.Logger.Info("no loadBalancer.pools configured: LoadBalancer services get the ready nodes' addresses")
			q := sdk.NewQueue[string]("localcloud-nodes")
			refresh := func() { q.Add("nodes") }
			if _, err := nodeInf.Informer().AddEventHandler(nodeChanges(refresh)); err != nil {
				return nil, fmt.Errorf("watching nodes: %w", err)
			}
			synced := []cache.InformerSynced{svcInf.Informer().HasSynced, nodeInf.Informer().HasSynced}
			go func() {
				if cache.WaitForCacheSync(ctx.Done(), synced...) {
					sdk.RunWorkers(ctx, q, 1, func(ctx context.Context, _ string) (sdk.Result, error) {
						return sdk.Result{}, p.syncAllNodeStatuses(ctx)
					}, env.Logger)
				}
			}()
		}
		return p, nil
	}
}

// nodeChanges calls refresh when a node comes, goes, or changes what the
// node-address assignment reads (readiness, addresses, labels).
func nodeChanges(refresh func()) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { refresh() },
		DeleteFunc: func(any) { refresh() },
		UpdateFunc: func(o, n any) {
			a, ok1 := o.(*v1.Node)
			b, ok2 := n.(*v1.Node)
			if !ok1 || !ok2 || ready(a) != ready(b) || !equality.Semantic.DeepEqual(a.Status.Addresses, b.Status.Addresses) ||
				!equality.Semantic.DeepEqual(a.Labels, b.Labels) || (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
				refresh()
			}
		},
	}
}

// syncAllNodeStatuses brings every served Service that already has a
// status to the current ready nodes' addresses. Services without one are
// the service controller's first sync to make.
func (p *Provider) syncAllNodeStatuses(ctx context.Context) error {
	svcs, err := p.services.List(labels.Everything())
	if err != nil {
		return err
	}
	var errs []error
	for _, s := range svcs {
		if !wantsLB(s) || len(s.Status.LoadBalancer.Ingress) == 0 {
			continue
		}
		if err := p.syncNodeStatus(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d services: %v", len(errs), errs)
	}
	return nil
}
