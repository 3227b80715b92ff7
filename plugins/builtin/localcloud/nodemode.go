package localcloud

import (
	"fmt"
	"net/netip"
	"slices"

	v1 "k8s.io/api/core/v1"
)

// With no pool configured a LoadBalancer Service gets the addresses of the
// ready nodes, as k3s's servicelb does: each node's ExternalIP of the
// family, else its InternalIP. The node agents' service proxy accepts the
// Service's ports on those addresses, so two such Services may not share a
// port and protocol: the older keeps it, the newer is refused.

// nodeAddresses is the node-address assignment.
func (w world) nodeAddresses(svc *v1.Service, fams []v1.IPFamily, req []netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range fams {
		out = append(out, readyNodeAddrs(w.nodes, familyBits(f))...)
	}
	if len(req) > 0 {
		for _, a := range req {
			if !slices.Contains(out, a) {
				return nil, fmt.Errorf("requested address %s is not the address of a ready node (no address pool is configured: the Service gets node addresses)", a)
			}
		}
		out = req
	}
	if err := w.portConflict(svc, out); err != nil {
		return nil, err
	}
	if err := kubeletConflict(svc, w.nodes); err != nil {
		return nil, err
	}
	return out, nil
}

// kubeletConflict refuses a port that a node's kubelet API serves on its
// address: the Service's rule would take the API server's connections to
// the kubelet (logs, exec).
func kubeletConflict(svc *v1.Service, nodes []*v1.Node) error {
	for _, n := range nodes {
		kp := n.Status.DaemonEndpoints.KubeletEndpoint.Port
		for _, p := range svc.Spec.Ports {
			if kp != 0 && p.Port == kp && p.Protocol == v1.ProtocolTCP {
				return fmt.Errorf("port %d/TCP is node %s's kubelet API port; with no address pool the Service is served on node addresses, so choose another port", p.Port, n.Name)
			}
		}
	}
	return nil
}

// readyNodeAddrs are the ready nodes' addresses of one family, sorted.
func readyNodeAddrs(nodes []*v1.Node, bits int) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		if !ready(n) {
			continue
		}
		a, ok := nodeAddr(n, v1.NodeExternalIP, bits)
		if !ok {
			a, ok = nodeAddr(n, v1.NodeInternalIP, bits)
		}
		if ok && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func nodeAddr(n *v1.Node, typ v1.NodeAddressType, bits int) (netip.Addr, bool) {
	for _, na := range n.Status.Addresses {
		if na.Type != typ {
			continue
		}
		if a, err := netip.ParseAddr(na.Address); err == nil && a.Unmap().BitLen() == bits {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func ready(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// portConflict refuses addresses on which an older Service already serves
// one of svc's ports.
func (w world) portConflict(svc *v1.Service, addrs []netip.Addr) error {
	key := svc.Namespace + "/" + svc.Name
	for _, h := range w.others {
		if !h.before(key, svc.CreationTimestamp.Time) {
			continue
		}
		for _, a := range addrs {
			if !slices.Contains(h.addrs, a) {
				continue
			}
			for _, p := range svc.Spec.Ports {
				if slices.ContainsFunc(h.ports, func(q v1.ServicePort) bool { return q.Port == p.Port && q.Protocol == p.Protocol }) {
					return fmt.Errorf("port %d/%s on %s is already served by Service %s", p.Port, p.Protocol, a, h.key)
				}
			}
		}
	}
	return nil
}
