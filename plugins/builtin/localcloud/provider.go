package localcloud

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	cloudprovider "k8s.io/cloud-provider"
)

// ProviderName is the provider's name, the scheme of its provider IDs
// (local://NODE).
const ProviderName = "local"

// Provider is the bare-metal cloud: instances are the Nodes themselves and
// load balancers are addresses (see world).
type Provider struct {
	client   kubernetes.Interface
	services corelisters.ServiceLister
	nodes    corelisters.NodeLister
	pools    []pool
	logger   *slog.Logger

	// mu serialises assignments: two Services synced at once must not
	// both be given the address neither status shows yet.
	mu sync.Mutex
	// reserved holds what this process assigned, by Service UID, until
	// EnsureLoadBalancerDeleted: it covers the moment between returning an
	// address and the controller writing it to the status. Everything else
	// is derived from the statuses, so a new leader starts from the truth.
	reserved map[types.UID]holder
}

var _ cloudprovider.Interface = (*Provider)(nil)

// Initialize is called by the SDK before the controllers start.
func (p *Provider) Initialize(cloudprovider.ControllerClientBuilder, <-chan struct{}) {}

func (p *Provider) LoadBalancer() (cloudprovider.LoadBalancer, bool) { return p, true }
func (p *Provider) Instances() (cloudprovider.Instances, bool)       { return nil, false }
func (p *Provider) InstancesV2() (cloudprovider.InstancesV2, bool)   { return p, true }

// Zones is not offered: zones and regions come with InstanceMetadata, as
// the Zones interface is deprecated for InstancesV2 providers.
func (p *Provider) Zones() (cloudprovider.Zones, bool)       { return nil, false }
func (p *Provider) Clusters() (cloudprovider.Clusters, bool) { return nil, false }

// Routes is not offered: node agents route pod ranges themselves (host-gw).
func (p *Provider) Routes() (cloudprovider.Routes, bool) { return nil, false }
func (p *Provider) ProviderName() string                 { return ProviderName }
func (p *Provider) HasClusterID() bool                   { return false }

// GetLoadBalancer reports the Service's addresses as its status holds them.
func (p *Provider) GetLoadBalancer(_ context.Context, _ string, svc *v1.Service) (*v1.LoadBalancerStatus, bool, error) {
	p.mu.Lock()
	_, reserved := p.reserved[svc.UID]
	p.mu.Unlock()
	st := svc.Status.LoadBalancer.DeepCopy()
	return st, reserved || len(st.Ingress) > 0, nil
}

func (p *Provider) GetLoadBalancerName(_ context.Context, _ string, svc *v1.Service) string {
	return cloudprovider.DefaultLoadBalancerName(svc)
}

// EnsureLoadBalancer assigns the Service its addresses.
func (p *Provider) EnsureLoadBalancer(_ context.Context, _ string, svc *v1.Service, _ []*v1.Node) (*v1.LoadBalancerStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.assignLocked(svc)
	if err != nil {
		return nil, err
	}
	if len(p.pools) > 0 {
		p.logger.Info("load balancer address assigned", "service", svc.Namespace+"/"+svc.Name, "addresses", ingressIPs(st))
	}
	return st, nil
}

// assignLocked computes svc's status and reserves its addresses.
func (p *Provider) assignLocked(svc *v1.Service) (*v1.LoadBalancerStatus, error) {
	w, err := p.worldFor(svc)
	if err != nil {
		return nil, err
	}
	addrs, err := w.assign(svc)
	if err != nil {
		return nil, err
	}
	p.reserved[svc.UID] = holder{key: svc.Namespace + "/" + svc.Name, created: svc.CreationTimestamp.Time, addrs: addrs, ports: svc.Spec.Ports}
	return statusOf(addrs), nil
}

// UpdateLoadBalancer follows a change of the node set. Pool addresses do
// not move with nodes; node addresses do, and the service controller
// writes no status after this call, so the provider writes it.
func (p *Provider) UpdateLoadBalancer(ctx context.Context, _ string, svc *v1.Service, _ []*v1.Node) error {
	if len(p.pools) > 0 {
		return nil
	}
	return p.syncNodeStatus(ctx, svc)
}

// EnsureLoadBalancerDeleted releases the Service's addresses: they are
// free once its status no longer holds them (the controller clears it).
func (p *Provider) EnsureLoadBalancerDeleted(_ context.Context, _ string, svc *v1.Service) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if h, ok := p.reserved[svc.UID]; ok {
		p.logger.Info("load balancer addresses released", "service", h.key, "addresses", h.addrs)
	}
	delete(p.reserved, svc.UID)
	return nil
}

// worldFor reads everything an assignment for svc depends on.
func (p *Provider) worldFor(svc *v1.Service) (world, error) {
	all, err := p.services.List(labels.Everything())
	if err != nil {
		return world{}, fmt.Errorf("listing services: %w", err)
	}
	nodes, err := p.nodes.List(labels.Everything())
	if err != nil {
		return world{}, fmt.Errorf("listing nodes: %w", err)
	}
	w := world{pools: p.pools, nodes: eligible(nodes), nodeAddrs: map[netip.Addr]bool{}}
	live := map[types.UID]bool{}
	for _, o := range all {
		live[o.UID] = true
		if o.UID == svc.UID {
			continue
		}
		if addrs := statusAddrs(o); len(addrs) > 0 {
			w.others = append(w.others, holder{key: o.Namespace + "/" + o.Name, created: o.CreationTimestamp.Time, addrs: addrs, ports: o.Spec.Ports})
		}
	}
	for uid, h := range p.reserved {
		switch {
		case !live[uid]:
			// Deleted without a cleanup call (its finalizer was removed by
			// hand): nothing holds its addresses any more.
			delete(p.reserved, uid)
		case uid != svc.UID:
			w.others = append(w.others, h)
		}
	}
	for _, n := range nodes {
		for _, na := range n.Status.Addresses {
			if a, err := netip.ParseAddr(na.Address); err == nil {
				w.nodeAddrs[a.Unmap()] = true
			}
		}
	}
	return w, nil
}

// eligible are the nodes the service controller would pass: not being
// deleted, not labelled node.kubernetes.io/exclude-from-external-load-balancers,
// not tainted for removal by the cluster autoscaler.
func eligible(nodes []*v1.Node) []*v1.Node {
	var out []*v1.Node
	for _, n := range nodes {
		if n.DeletionTimestamp != nil {
			continue
		}
		if _, ex := n.Labels[v1.LabelNodeExcludeBalancers]; ex && n.Labels[v1.LabelNodeExcludeBalancers] != "false" {
			continue
		}
		if slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == "ToBeDeletedByClusterAutoscaler" }) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// statusOf is the status for addrs: VIPs, delivered to the node with
// their destination intact (the agents' proxy takes them).
func statusOf(addrs []netip.Addr) *v1.LoadBalancerStatus {
	st := &v1.LoadBalancerStatus{}
	for _, a := range addrs {
		mode := v1.LoadBalancerIPModeVIP
		st.Ingress = append(st.Ingress, v1.LoadBalancerIngress{IP: a.String(), IPMode: &mode})
	}
	return st
}

func ingressIPs(st *v1.LoadBalancerStatus) []string {
	var out []string
	for _, i := range st.Ingress {
		out = append(out, i.IP)
	}
	return out
}

// wantsLB: the Services this provider serves (the service controller's
// own test: type LoadBalancer with no loadBalancerClass).
func wantsLB(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil && svc.DeletionTimestamp == nil
}

// syncNodeStatus recomputes a node-address Service's status and writes it
// if it changed.
func (p *Provider) syncNodeStatus(ctx context.Context, svc *v1.Service) error {
	if !wantsLB(svc) {
		return nil
	}
	p.mu.Lock()
	st, err := p.assignLocked(svc)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(st, &svc.Status.LoadBalancer) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"loadBalancer": st}})
	if err != nil {
		return err
	}
	if _, err := p.client.CoreV1().Services(svc.Namespace).Patch(ctx, svc.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("writing the load-balancer status of service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	p.logger.Info("load balancer follows the ready nodes", "service", svc.Namespace+"/"+svc.Name, "addresses", ingressIPs(st))
	return nil
}
