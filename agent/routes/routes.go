// Package routes gives pods on different nodes a direct path to each other
// without NAT (host-gw, as flannel's backend of that name): every node
// routes each other node's pod CIDRs through that node's internal address,
// so a pod's address is the same seen from inside and outside. It needs the
// nodes on one layer-2 network; routes to a node that is not on a directly
// connected network are refused by the kernel and reported.
//
// Desired is a pure function from Nodes to routes; the Router keeps the
// kernel's main routing table in step, level-triggered: it owns exactly the
// routes tagged with its rtnetlink protocol, adds or replaces the desired
// ones and deletes the others (a node that left, a changed address).
//
// Wiring, in the agent:
//
//	r, err := routes.New(routes.Options{NodeName: node}, factory.Core().V1().Nodes().Informer(), log)
//	go r.Run(ctx)
package routes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/agent/internal/syncloop"
)

// Protocol is the rtnetlink protocol number that tags Keelson's routes
// ("ip route show proto 75"); no standard routing daemon uses it.
const Protocol = netlink.RouteProtocol(75)

// Route sends a pod CIDR to the node that holds it.
type Route struct {
	Dst  netip.Prefix
	Via  netip.Addr
	Node string
}

// Desired returns the routes this node needs: each other node's pod CIDRs
// through its first InternalIP of the same family. Nodes without pod CIDRs
// (not yet allocated) or without a suitable address are skipped, the
// latter reported.
func Desired(nodes []*v1.Node, self string) ([]Route, []error) {
	var out []Route
	var problems []error
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			dst, err := netip.ParsePrefix(c)
			if err != nil {
				problems = append(problems, fmt.Errorf("node %s: spec.podCIDRs: %q: %w", n.Name, c, err))
				continue
			}
			via, ok := internalIP(n, dst.Addr().Is4())
			if !ok {
				problems = append(problems, fmt.Errorf("node %s has no %s InternalIP address to route its pod CIDR %s through", n.Name, family(dst.Addr().Is4()), dst))
				continue
			}
			out = append(out, Route{Dst: dst.Masked(), Via: via, Node: n.Name})
		}
	}
	slices.SortFunc(out, func(a, b Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	return out, problems
}

func family(v4 bool) string {
	if v4 {
		return "IPv4"
	}
	return "IPv6"
}

func internalIP(n *v1.Node, v4 bool) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != v1.NodeInternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err == nil && ip.Unmap().Is4() == v4 {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// Options configure the router.
type Options struct {
	// NodeName is this node (its own pod CIDR is on its bridge).
	NodeName string
	// MinSyncPeriod and SyncPeriod bound how often routes are compared
	// with the Nodes (defaults 1s and 1m).
	MinSyncPeriod, SyncPeriod time.Duration
}

// Router keeps the routes to other nodes' pods.
type Router struct {
	opts   Options
	nodes  corelisters.NodeLister
	synced cache.InformerSynced
	nl     *netlink.Handle
	loop   *syncloop.Loop
	log    *slog.Logger
}

// New returns a router fed by a Node informer, working in the network
// namespace of the calling process.
func New(opts Options, nodes cache.SharedIndexInformer, log *slog.Logger) (*Router, error) {
	if opts.NodeName == "" {
		return nil, errors.New("routes: nodeName is empty; set the node's name")
	}
	if opts.MinSyncPeriod == 0 {
		opts.MinSyncPeriod = time.Second
	}
	if opts.SyncPeriod == 0 {
		opts.SyncPeriod = time.Minute
	}
	if log == nil {
		log = slog.Default()
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("routes: netlink: %w", err)
	}
	r := &Router{opts: opts, nodes: corelisters.NewNodeLister(nodes.GetIndexer()), synced: nodes.HasSynced, nl: h, log: log.With("component", "routes")}
	r.loop = syncloop.New(r.Sync, syncloop.Options{Name: "routes", MinInterval: opts.MinSyncPeriod, MaxInterval: opts.SyncPeriod, Logger: r.log})
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.loop.Trigger() },
		UpdateFunc: func(any, any) { r.loop.Trigger() },
		DeleteFunc: func(any) { r.loop.Trigger() },
	}); err != nil {
		return nil, fmt.Errorf("routes: watching nodes: %w", err)
	}
	return r, nil
}

// Run keeps the routes until ctx ends. Routes stay when it returns: pods
// keep talking while the agent restarts.
func (r *Router) Run(ctx context.Context) error {
	defer r.nl.Close()
	if !cache.WaitForCacheSync(ctx.Done(), r.synced) {
		return fmt.Errorf("routes: caches did not sync: %w", ctx.Err())
	}
	r.loop.Run(ctx)
	return nil
}

// Sync makes the kernel's routes match the Nodes once.
func (r *Router) Sync(context.Context) error {
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("routes: listing nodes: %w", err)
	}
	want, problems := Desired(nodes, r.opts.NodeName)
	for _, p := range problems {
		r.log.Warn("cannot route to a node's pods", "err", p)
	}
	return apply(r.nl, want, r.log)
}

// apply adds, replaces and deletes this package's routes in the main table.
func apply(nl *netlink.Handle, want []Route, log *slog.Logger) error {
	have, err := owned(nl)
	if err != nil {
		return err
	}
	wanted := map[netip.Prefix]Route{}
	for _, w := range want {
		wanted[w.Dst] = w
	}
	var errs []error
	for _, h := range have {
		dst := prefixOf(h.Dst)
		if w, ok := wanted[dst]; ok && ipOf(h.Gw) == w.Via {
			delete(wanted, dst) // already right
			continue
		}
		if _, ok := wanted[dst]; ok {
			continue // replaced below
		}
		if err := nl.RouteDel(&h); err != nil {
			errs = append(errs, fmt.Errorf("routes: deleting %s via %s: %w", h.Dst, h.Gw, err))
			continue
		}
		log.Info("deleted route", "dst", h.Dst, "via", h.Gw)
	}
	for _, w := range want {
		if _, ok := wanted[w.Dst]; !ok {
			continue
		}
		rt := &netlink.Route{Dst: ipNet(w.Dst), Gw: net.IP(w.Via.AsSlice()), Protocol: Protocol, Table: 254}
		if err := nl.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("routes: pod CIDR %s of node %s via %s (is the node on this node's network?): %w", w.Dst, w.Node, w.Via, err))
			continue
		}
		log.Info("routed pod CIDR", "node", w.Node, "dst", w.Dst, "via", w.Via)
	}
	return errors.Join(errs...)
}

// owned lists the routes tagged with Protocol, both families.
func owned(nl *netlink.Handle) ([]netlink.Route, error) {
	rs, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: Protocol, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("routes: listing routes: %w", err)
	}
	return rs, nil
}

// Cleanup deletes every route this package added (keelson agent --cleanup).
func Cleanup() error {
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("routes cleanup: netlink: %w", err)
	}
	defer h.Close()
	rs, err := owned(h)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if err := h.RouteDel(&r); err != nil {
			errs = append(errs, fmt.Errorf("routes cleanup: deleting %s: %w", r.Dst, err))
		}
	}
	return errors.Join(errs...)
}

func prefixOf(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a, _ := netip.AddrFromSlice(n.IP)
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones)
}

func ipOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
