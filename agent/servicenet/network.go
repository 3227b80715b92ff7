// Package servicenet runs a node's service networking: the service proxy
// (agent/proxy), the cluster DNS server (agent/dns), NetworkPolicy
// enforcement (agent/netpol) and the routes to other nodes' pods
// (agent/routes), fed by one set of informers with caches trimmed to what
// they read; and it prepares the node for them (IP forwarding,
// bridge-netfilter, the cluster DNS address, masquerade of pod traffic
// leaving the cluster).
//
// Wiring, in the agent:
//
//	n, err := network.New(client, network.Config{NodeName: node, ClusterCIDRs: cidrs, ClusterDNS: dns}, log)
//	go n.Run(ctx)                        // until the agent stops
//	network.Cleanup(ctx, cfg)            // keelson agent --cleanup
package servicenet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/agent/dns"
	"github.com/keelson/keelson/agent/netpol"
	"github.com/keelson/keelson/agent/proxy"
	"github.com/keelson/keelson/agent/routes"
)

// Network is a node's service networking.
type Network struct {
	cfg     Config
	log     *slog.Logger
	factory informers.SharedInformerFactory
	runs    []func(context.Context) error
	podMasq *podMasquerade
}

// New builds every component; Run starts them.
func New(client kubernetes.Interface, cfg Config, log *slog.Logger) (*Network, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	n := &Network{cfg: cfg, log: log, factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trim))}
	services := n.factory.Core().V1().Services().Informer()
	slices := n.factory.Discovery().V1().EndpointSlices().Informer()

	// The enforcer follows the proxy's mode: its own nftables table when
	// the proxy runs in nftables, iptables' filter table otherwise. There
	// its jumps must come before the proxy's in FORWARD (the proxy accepts
	// service traffic there): it starts once the proxy has inserted its
	// jumps, and then inserts its own above them.
	proxySynced := make(chan struct{})
	var once sync.Once
	pm := newProxyMetrics(cfg.metricsRegisterer())
	p, err := proxy.New(proxy.Config{
		Mode: cfg.ProxyMode, NodeName: cfg.NodeName, Families: cfg.Families(), ClusterCIDRs: cfg.ClusterCIDRs,
		NodePortAddresses: cfg.NodePortAddresses, MasqueradeAll: cfg.MasqueradeAll, Exempt: cfg.ClusterDNS,
		MinSyncPeriod: cfg.MinSyncPeriod, SyncPeriod: cfg.SyncPeriod,
		OnSync: func(s proxy.SyncStats) {
			pm.synced(s)
			once.Do(func() { close(proxySynced) })
		},
		OnSyncError: pm.failed,
	}, services, slices, log)
	if err != nil {
		return nil, err
	}
	n.runs = append(n.runs, p.Run)

	if len(cfg.ClusterDNS) > 0 {
		catalog, err := dns.NewInformerCatalog(services, slices)
		if err != nil {
			return nil, err
		}
		d, err := dns.New(dns.Options{Addresses: cfg.ClusterDNS, ClusterDomain: cfg.ClusterDomain, ResolvConf: cfg.ResolvConf,
			Metrics: dns.NewMetrics(cfg.metricsRegisterer())}, catalog, log)
		if err != nil {
			return nil, err
		}
		n.runs = append(n.runs, d.Run)
	}

	if !cfg.DisableNetworkPolicy {
		e, err := netpol.New(netpol.Options{NodeName: cfg.NodeName, Families: cfg.Families(), Exempt: cfg.ClusterDNS,
			MinSyncPeriod: cfg.MinSyncPeriod, SyncPeriod: cfg.SyncPeriod, Mode: p.Mode()},
			n.factory.Networking().V1().NetworkPolicies().Informer(), n.factory.Core().V1().Pods().Informer(),
			n.factory.Core().V1().Namespaces().Informer(), log)
		if err != nil {
			return nil, err
		}
		n.runs = append(n.runs, func(ctx context.Context) error {
			select {
			case <-proxySynced:
			case <-ctx.Done():
				return nil
			}
			return e.Run(ctx)
		})
	}

	r, err := routes.New(routes.Options{NodeName: cfg.NodeName, MinSyncPeriod: cfg.MinSyncPeriod, SyncPeriod: cfg.SyncPeriod},
		n.factory.Core().V1().Nodes().Informer(), log)
	if err != nil {
		return nil, err
	}
	n.runs = append(n.runs, r.Run)

	if !cfg.NoPodMasquerade {
		n.podMasq = newPodMasquerade(cfg.ClusterCIDRs)
	}
	return n, nil
}

// Run prepares the node, then runs every component until ctx ends or one
// fails. Unless KeepRulesOnShutdown, what it installed is removed when it
// returns.
func (n *Network) Run(ctx context.Context) error {
	if err := n.prepare(); err != nil {
		return err
	}
	if !n.cfg.KeepRulesOnShutdown {
		defer func() {
			// The parent context is done: cleanup gets its own.
			if err := Cleanup(context.WithoutCancel(ctx), n.cfg); err != nil {
				n.log.Error("cleaning up service networking", "err", err)
			}
		}()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.factory.Start(ctx.Done())
	defer func() {
		cancel() // Shutdown waits for the informers, which stop with ctx
		n.factory.Shutdown()
	}()
	if n.podMasq != nil {
		if err := n.podMasq.apply(ctx); err != nil {
			return err
		}
	}
	errc := make(chan error, len(n.runs))
	var wg sync.WaitGroup
	for _, run := range n.runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel() // one component down takes the others down: the agent restarts them all
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// prepare sets what the components need of the node.
func (n *Network) prepare() error {
	sysctls := map[string]string{}
	for _, f := range n.cfg.Families() {
		if f == v1.IPv4Protocol {
			sysctls["/proc/sys/net/ipv4/ip_forward"] = "1"
		} else {
			sysctls["/proc/sys/net/ipv6/conf/all/forwarding"] = "1"
		}
	}
	for path, v := range sysctls {
		if err := os.WriteFile(path, []byte(v), 0o644); err != nil {
			return fmt.Errorf("network: enabling forwarding (%s): %w", path, err)
		}
	}
	// Pods on one bridge reply to each other bridged, not routed: without
	// br_netfilter those replies skip conntrack and a DNATed service
	// connection breaks.
	const brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables"
	if err := os.WriteFile(brnf, []byte("1"), 0o644); err != nil {
		n.log.Warn("bridge netfilter unavailable: pods reaching a service whose endpoint shares their bridge may fail; load br_netfilter", "err", err)
	}
	if len(n.cfg.Families()) > 1 {
		_ = os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-ip6tables", []byte("1"), 0o644)
	}
	if err := addDNSAddresses(n.cfg.DNSLink, n.cfg.ClusterDNS); err != nil {
		return err
	}
	return nil
}

// Cleanup removes everything service networking installs on the node:
// rules, routes, the DNS addresses. It is safe on a node that never ran it.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg.ApplyDefaults()
	var errs []error
	errs = append(errs, proxy.Cleanup(ctx, nil), netpol.Cleanup(ctx, nil), cleanupPodMasquerade(ctx), routes.Cleanup())
	errs = append(errs, removeDNSAddresses(cfg.DNSLink, cfg.ClusterDNS))
	return errors.Join(errs...)
}

// Services lists the cluster's Services from the network's own cache, so
// that the agent's pods (their service environment variables) need no
// second watch of every Service. Valid once WaitForServices returned true.
func (n *Network) Services() corelisters.ServiceLister {
	return n.factory.Core().V1().Services().Lister()
}

// WaitForServices waits, once Run has started, until the Services cache has
// synced; false if ctx ended first.
func (n *Network) WaitForServices(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), n.factory.Core().V1().Services().Informer().HasSynced)
}
