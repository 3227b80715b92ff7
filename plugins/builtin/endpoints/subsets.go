//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; this controller keeps them (or mirrors them) on purpose.

package endpoints

import (
	"cmp"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
)

// maxAddresses is how many addresses one Endpoints object carries at most;
// beyond it the object is truncated and annotated, as upstream does (the
// EndpointSlices carry them all).
const maxAddresses = 1000

// desiredSubsets returns the subsets svc's Endpoints should hold for pods
// (already filtered by svc's selector), in canonical form.
func desiredSubsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	var flat []corev1.EndpointSubset
	tolerateUnready := svc.Spec.PublishNotReadyAddresses
	for _, pod := range pods {
		if !servicepods.InEndpoints(pod, tolerateUnready) {
			continue
		}
		ips := servicepods.IPs(pod, servicepods.PrimaryFamilyIPv6(svc, pod))
		if len(ips) == 0 {
			continue // the pod has no address of the service's family yet
		}
		addr := corev1.EndpointAddress{
			IP:        ips[0],
			NodeName:  &pod.Spec.NodeName,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		if servicepods.PublishHostname(pod, svc) {
			addr.Hostname = pod.Spec.Hostname
		}
		ready := tolerateUnready || servicepods.Ready(pod)
		if len(svc.Spec.Ports) == 0 {
			// Only a headless service may have no ports; its addresses are
			// published without any.
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				flat = append(flat, oneAddress(addr, nil, ready))
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, ok := servicepods.FindPort(pod, sp)
			if !ok {
				continue
			}
			ep := &corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}
			flat = append(flat, oneAddress(addr, ep, ready))
		}
	}
	return canonical(flat)
}

func oneAddress(addr corev1.EndpointAddress, port *corev1.EndpointPort, ready bool) corev1.EndpointSubset {
	s := corev1.EndpointSubset{Ports: []corev1.EndpointPort{}}
	if port != nil {
		s.Ports = append(s.Ports, *port)
	}
	if ready {
		s.Addresses = []corev1.EndpointAddress{addr}
	} else {
		s.NotReadyAddresses = []corev1.EndpointAddress{addr}
	}
	return s
}

// canonical regroups subsets so that each address appears once per
// readiness, in the one subset whose port set is exactly the ports it
// serves, with subsets, addresses and ports sorted (target resourceVersions
// cleared). Two lists of subsets
// that say the same thing have the same canonical form, which is what makes
// the comparison with the stored Endpoints (written by us, by an older
// controller or by hand) meaningful.
func canonical(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	type entry struct {
		addr                corev1.EndpointAddress
		ready, notReady     map[string]corev1.EndpointPort
		readyNoPorts, notNo bool
	}
	entries := map[string]*entry{}
	var order []string
	get := func(a corev1.EndpointAddress) *entry {
		k := addressKey(a)
		e, ok := entries[k]
		if !ok {
			// A copy: the input may be an informer's cached object. The
			// target's resourceVersion says nothing about the endpoint and
			// would make every pod update look like a change.
			a = *a.DeepCopy()
			if a.TargetRef != nil {
				a.TargetRef.ResourceVersion = ""
			}
			e = &entry{addr: a, ready: map[string]corev1.EndpointPort{}, notReady: map[string]corev1.EndpointPort{}}
			entries[k] = e
			order = append(order, k)
		}
		return e
	}
	for _, s := range subsets {
		for _, a := range s.Addresses {
			e := get(a)
			e.readyNoPorts = e.readyNoPorts || len(s.Ports) == 0
			for _, p := range s.Ports {
				e.ready[portKey(p)] = p
			}
		}
		for _, a := range s.NotReadyAddresses {
			e := get(a)
			e.notNo = e.notNo || len(s.Ports) == 0
			for _, p := range s.Ports {
				e.notReady[portKey(p)] = p
			}
		}
	}
	// Addresses are added in (IP, key) order, so every subset's lists come
	// out sorted.
	slices.SortFunc(order, func(a, b string) int {
		return cmp.Or(strings.Compare(entries[a].addr.IP, entries[b].addr.IP), strings.Compare(a, b))
	})
	groups := map[string]*corev1.EndpointSubset{}
	group := func(ports map[string]corev1.EndpointPort) *corev1.EndpointSubset {
		list := sortedPorts(ports)
		k := portsKey(list)
		g, ok := groups[k]
		if !ok {
			g = &corev1.EndpointSubset{Ports: list}
			groups[k] = g
		}
		return g
	}
	for _, k := range order {
		e := entries[k]
		if len(e.ready) > 0 || e.readyNoPorts {
			g := group(e.ready)
			g.Addresses = append(g.Addresses, e.addr)
		}
		if len(e.notReady) > 0 || e.notNo {
			g := group(e.notReady)
			g.NotReadyAddresses = append(g.NotReadyAddresses, e.addr)
		}
	}
	out := make([]corev1.EndpointSubset, 0, len(groups))
	for _, k := range slices.Sorted(maps.Keys(groups)) {
		out = append(out, *groups[k])
	}
	return out
}

func addressKey(a corev1.EndpointAddress) string {
	var b strings.Builder
	b.WriteString(a.IP)
	b.WriteByte('|')
	b.WriteString(a.Hostname)
	b.WriteByte('|')
	if a.NodeName != nil {
		b.WriteString(*a.NodeName)
	}
	b.WriteByte('|')
	if r := a.TargetRef; r != nil {
		b.WriteString(r.Kind + "/" + r.Namespace + "/" + r.Name + "/" + string(r.UID))
	}
	return b.String()
}

func portKey(p corev1.EndpointPort) string {
	app := ""
	if p.AppProtocol != nil {
		app = *p.AppProtocol
	}
	return p.Name + "|" + strconv.Itoa(int(p.Port)) + "|" + string(p.Protocol) + "|" + app
}

func sortedPorts(ports map[string]corev1.EndpointPort) []corev1.EndpointPort {
	out := make([]corev1.EndpointPort, 0, len(ports))
	for _, p := range ports {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b corev1.EndpointPort) int { return strings.Compare(portKey(a), portKey(b)) })
	return out
}

func portsKey(ports []corev1.EndpointPort) string {
	keys := make([]string, len(ports))
	for i, p := range ports {
		keys[i] = portKey(p)
	}
	return strings.Join(keys, ",")
}

// truncate keeps at most maxAddresses addresses, ready ones first, taking
// from each subset in proportion to its size; it reports whether anything
// was dropped.
func truncate(subsets []corev1.EndpointSubset) bool {
	ready, notReady := 0, 0
	for _, s := range subsets {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	if ready+notReady <= maxAddresses {
		return false
	}
	truncReady := ready > maxAddresses
	budget, total := maxAddresses-ready, notReady
	if truncReady {
		budget, total = maxAddresses, ready
	}
	left := budget
	for i := range subsets {
		s := &subsets[i]
		n := len(s.NotReadyAddresses)
		if truncReady {
			n = len(s.Addresses)
		}
		take := min(int(math.Ceil(float64(n)/float64(total)*float64(budget))), left)
		if truncReady {
			s.Addresses = s.Addresses[:min(take, len(s.Addresses))]
			s.NotReadyAddresses = nil
			left -= len(s.Addresses)
		} else {
			s.NotReadyAddresses = s.NotReadyAddresses[:min(take, len(s.NotReadyAddresses))]
			left -= len(s.NotReadyAddresses)
		}
	}
	return true
}
