package announcer

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"

	"github.com/keelson/keelson/plugins/sdk"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelExcludeFromLB keeps a node out of every load balancer (upstream's
// node.kubernetes.io/exclude-from-external-load-balancers).
const LabelExcludeFromLB = v1.LabelNodeExcludeBalancers

// World is what the announcer decides from: the cluster objects its
// informers hold and the node's view of the gossip pool.
type World struct {
	Services []*v1.Service
	Slices   []*discoveryv1.EndpointSlice
	Nodes    []*v1.Node
	// Alive are the gossip members that are alive and not suspected; nil
	// means no gossip view (a server's embedded agent), and every Ready node
	// counts as alive.
	Alive map[string]bool
	// NodeSelector restricts announcing nodes to those carrying these
	// labels (the plugin's own node selector: nodes outside it run no
	// announcer).
	NodeSelector map[string]string
}

// Assignment is one LoadBalancer IP and the node that announces it.
type Assignment struct {
	Service string // namespace/name
	IP      netip.Addr
	Node    string // empty: no eligible node
}

// Plan assigns every LoadBalancer IP of every Service this announcer
// serves to exactly one eligible node, by rendezvous hashing over
// service and IP: every node computes the same owner from the same view,
// and a node leaving moves only the IPs it held.
//
// An IP that is some Node's own address is left out: its node already
// answers for it (the built-in provider gives LoadBalancer Services the
// nodes' addresses when it has no pool), and another node answering ARP
// for it would take that node's traffic — its kubelet port, its API
// connections — and drop it.
func Plan(w World) []Assignment {
	base := w.baseEligible()
	local := localEndpointNodes(w.Slices)
	nodeIPs := nodeAddresses(w.Nodes)
	var out []Assignment
	for _, svc := range w.Services {
		if !Announced(svc) {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		nodes := base
		if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
			nodes = nil
			for _, n := range base {
				if local[key][n] {
					nodes = append(nodes, n)
				}
			}
		}
		for _, ip := range ingressIPs(svc) {
			if nodeIPs[ip] {
				continue
			}
			out = append(out, Assignment{Service: key, IP: ip, Node: owner(key+"/"+ip.String(), nodes)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].IP.Less(out[j].IP)
	})
	return out
}

// Announced reports whether the announcer serves svc: a LoadBalancer
// Service of the built-in class (no spec.loadBalancerClass; another class
// belongs to another implementation).
func Announced(svc *v1.Service) bool {
	return svc.Spec.Type == v1.ServiceTypeLoadBalancer && svc.Spec.LoadBalancerClass == nil
}

// ingressIPs are the Service's status IPs that traffic reaches the nodes
// for (IPMode Proxy IPs are a proxy's, which answers for them itself).
func ingressIPs(svc *v1.Service) []netip.Addr {
	var out []netip.Addr
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy {
			continue
		}
		if a, err := netip.ParseAddr(ing.IP); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// nodeAddresses are every Node's own IP addresses, whatever its state.
func nodeAddresses(nodes []*v1.Node) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			if a.Type != v1.NodeInternalIP && a.Type != v1.NodeExternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				out[ip.Unmap()] = true
			}
		}
	}
	return out
}

// baseEligible are the nodes that may announce any IP: alive in gossip,
// Ready, not excluded from load balancers, selected; sorted.
func (w World) baseEligible() []string {
	var out []string
	for _, n := range w.Nodes {
		if w.Alive != nil && !w.Alive[n.Name] {
			continue
		}
		if _, excluded := n.Labels[LabelExcludeFromLB]; excluded || !ready(n) || !selects(w.NodeSelector, n.Labels) {
			continue
		}
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func ready(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// localEndpointNodes maps namespace/service to the nodes holding a ready
// endpoint of it.
func localEndpointNodes(slices []*discoveryv1.EndpointSlice) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := s.Namespace + "/" + svc
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if out[key] == nil {
				out[key] = map[string]bool{}
			}
			out[key][*ep.NodeName] = true
		}
	}
	return out
}

// LocalEndpoints counts the ready endpoints of namespace/service on node.
func LocalEndpoints(slices []*discoveryv1.EndpointSlice, key, node string) int {
	n := 0
	for _, s := range slices {
		if s.Namespace+"/"+s.Labels[discoveryv1.LabelServiceName] != key {
			continue
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && *ep.NodeName == node && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				n++
			}
		}
	}
	return n
}

// owner is the rendezvous (highest random weight) choice of key among
// nodes; "" when there is none.
func owner(key string, nodes []string) string {
	best, bestScore := "", uint64(0)
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write([]byte(key))
		h.Write([]byte{0})
		h.Write([]byte(n))
		if s := mix(h.Sum64()); best == "" || s > bestScore || (s == bestScore && n < best) {
			best, bestScore = n, s
		}
	}
	return best
}

// mix is splitmix64's finalizer: FNV alone scores keys that differ in a
// few trailing bytes too alike, which skews rendezvous choices.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// trimNode keeps of a Node what the plan reads: name, labels, addresses
// and the Ready condition's status (not its heartbeat times, images or
// capacity), so the cache holds a few hundred bytes a node.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	out := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion},
		Status: v1.NodeStatus{Addresses: n.Status.Addresses}}
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			out.Status.Conditions = []v1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}
