package endpointslice

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/servicepods"
	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
)

// nodeLookup returns a node's zone (nil when unlabelled) and whether the
// node exists.
type nodeLookup func(name string) (zone *string, found bool)

// planner computes the slices of one Service.
type planner struct {
	svc      *corev1.Service
	nodes    nodeLookup
	maxPer   int
	skipped  []error // pods left out because their node is unknown
	existing []*discoveryv1.EndpointSlice
}

// computePlan compares the slices svc should have for pods with existing
// (svc's slices managed by this controller) and returns the changes, plus
// the pods it had to leave out (their node is not known yet).
func computePlan(svc *corev1.Service, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice,
	nodes nodeLookup, maxPer int) (sliceset.Changes, []error) {
	pl := &planner{svc: svc, nodes: nodes, maxPer: maxPer, existing: existing}
	var out sliceset.Changes
	types := addressTypes(svc)
	byType := map[discoveryv1.AddressType][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		if !slices.Contains(types, s.AddressType) {
			out.Delete = append(out.Delete, s)
			continue
		}
		byType[s.AddressType] = append(byType[s.AddressType], s)
	}
	for _, t := range types {
		p := pl.forAddressType(t, pods, byType[t])
		out.Create = append(out.Create, p.Create...)
		out.Update = append(out.Update, p.Update...)
		out.Delete = append(out.Delete, p.Delete...)
	}
	out.Recycle(func(old *discoveryv1.EndpointSlice) bool { return ownedBy(old, svc) })
	return out, pl.skipped
}

// addressTypes are the slice address types of svc: one per IP family,
// inferred from the ClusterIP when families are unset, and both for a
// headless service without families.
func addressTypes(svc *corev1.Service) []discoveryv1.AddressType {
	var out []discoveryv1.AddressType
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			out = append(out, discoveryv1.AddressTypeIPv4)
		case corev1.IPv6Protocol:
			out = append(out, discoveryv1.AddressTypeIPv6)
		}
	}
	if len(out) > 0 {
		return out
	}
	if servicepods.HasClusterIP(svc) {
		p := &corev1.Pod{Status: corev1.PodStatus{PodIP: svc.Spec.ClusterIP}}
		if len(servicepods.IPs(p, true)) > 0 {
			return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv6}
		}
		return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}
	}
	return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
}

type portGroup struct {
	ports []discoveryv1.EndpointPort
	set   sliceset.Set
}

func (pl *planner) forAddressType(t discoveryv1.AddressType, pods []*corev1.Pod, existing []*discoveryv1.EndpointSlice) sliceset.Changes {
	var out sliceset.Changes
	existingByPorts := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		if !ownedBy(s, pl.svc) {
			out.Delete = append(out.Delete, s) // left over from a Service of the same name
			continue
		}
		k := sliceset.PortsKey(s.Ports)
		existingByPorts[k] = append(existingByPorts[k], s)
	}
	desired := pl.desired(t, pods)
	for _, k := range slices.Sorted(maps.Keys(desired)) {
		p := pl.byPorts(existingByPorts[k], desired[k], t)
		out.Create = append(out.Create, p.Create...)
		out.Update = append(out.Update, p.Update...)
		out.Delete = append(out.Delete, p.Delete...)
	}
	for _, k := range slices.Sorted(maps.Keys(existingByPorts)) {
		if _, ok := desired[k]; !ok {
			out.Delete = append(out.Delete, existingByPorts[k]...)
		}
	}
	// A Service with no endpoints still gets one empty slice, so consumers
	// can tell "no endpoints" from "not processed yet".
	if len(existing) == len(out.Delete) && len(out.Create) == 0 {
		placeholder := pl.newSlice(nil, t)
		if len(out.Delete) == 1 && isPlaceholder(out.Delete[0], t) {
			if kept := out.Delete[0]; !maps.Equal(kept.Labels, placeholder.Labels) {
				s := kept.DeepCopy()
				s.Labels = placeholder.Labels
				out.Update = append(out.Update, s)
			}
			out.Delete = nil
		} else {
			out.Create = append(out.Create, placeholder)
		}
	}
	return out
}

// desired returns the endpoints svc should list for address type t,
// grouped by the set of ports they serve (a named targetPort may resolve
// to different numbers in different pods).
func (pl *planner) desired(t discoveryv1.AddressType, pods []*corev1.Pod) map[string]*portGroup {
	out := map[string]*portGroup{}
	for _, pod := range pods {
		if !servicepods.InEndpoints(pod, true) {
			continue
		}
		zone, found := pl.nodes(pod.Spec.NodeName)
		if !found && !pl.svc.Spec.PublishNotReadyAddresses {
			pl.skipped = append(pl.skipped, fmt.Errorf("skipping pod %s of service %s/%s: node %q not found",
				pod.Name, pl.svc.Namespace, pl.svc.Name, pod.Spec.NodeName))
			continue
		}
		ep := pl.endpoint(pod, t, zone)
		if len(ep.Addresses) == 0 {
			continue
		}
		ports := pl.ports(pod)
		k := sliceset.PortsKey(ports)
		g, ok := out[k]
		if !ok {
			g = &portGroup{ports: ports, set: sliceset.Set{}}
			out[k] = g
		}
		g.set.Insert(ep)
	}
	return out
}

func (pl *planner) endpoint(pod *corev1.Pod, t discoveryv1.AddressType, zone *string) *discoveryv1.Endpoint {
	serving := servicepods.Ready(pod)
	terminating := pod.DeletionTimestamp != nil
	// A terminating pod is never "ready", unless the Service publishes
	// addresses regardless of readiness.
	ready := pl.svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := &discoveryv1.Endpoint{
		Addresses: servicepods.IPs(pod, t == discoveryv1.AddressTypeIPv6),
		Conditions: discoveryv1.EndpointConditions{
			Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating),
		},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Zone:      zone,
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = ptr.To(pod.Spec.NodeName)
	}
	if servicepods.PublishHostname(pod, pl.svc) {
		ep.Hostname = ptr.To(pod.Spec.Hostname)
	}
	return ep
}

func (pl *planner) ports(pod *corev1.Pod) []discoveryv1.EndpointPort {
	out := []discoveryv1.EndpointPort{}
	for i := range pl.svc.Spec.Ports {
		sp := &pl.svc.Spec.Ports[i]
		port, ok := servicepods.FindPort(pod, sp)
		if !ok {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{
			Name: ptr.To(sp.Name), Port: ptr.To(port), Protocol: ptr.To(sp.Protocol), AppProtocol: sp.AppProtocol,
		})
	}
	return out
}

// byPorts updates the existing slices of one port set to hold exactly the
// desired endpoints, changing as few slices as it can: endpoints stay in
// the slice they are in, new ones fill slices being rewritten anyway, then
// the unchanged slice they fit best, and only then new slices.
func (pl *planner) byPorts(existing []*discoveryv1.EndpointSlice, want *portGroup, t discoveryv1.AddressType) sliceset.Changes {
	var out sliceset.Changes
	var updated, unchanged []*discoveryv1.EndpointSlice
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	for _, s := range existing {
		var kept []discoveryv1.Endpoint
		changed := false
		for i := range s.Endpoints {
			k := sliceset.EndpointKey(&s.Endpoints[i])
			ep, ok := want.set[k]
			if !ok {
				continue
			}
			kept = append(kept, *ep)
			changed = changed || !sliceset.SameEndpoint(ep, &s.Endpoints[i])
			delete(want.set, k)
		}
		labels := pl.labels()
		switch {
		case len(kept) == 0:
			out.Delete = append(out.Delete, s)
		case changed || len(kept) != len(s.Endpoints) || !maps.Equal(labels, s.Labels):
			c := s.DeepCopy()
			c.Endpoints, c.Labels = kept, labels
			updated = append(updated, c)
		default:
			unchanged = append(unchanged, s)
		}
	}
	// Fill the fullest slices being rewritten first.
	slices.SortStableFunc(updated, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Compare(len(b.Endpoints), len(a.Endpoints))
	})
	for _, s := range updated {
		s.Endpoints = append(s.Endpoints, want.set.PopSorted(pl.maxPer-len(s.Endpoints))...)
	}
	for len(want.set) > 0 {
		var fill *discoveryv1.EndpointSlice
		if len(want.set) < pl.maxPer {
			if i := closestFit(unchanged, len(want.set), pl.maxPer); i >= 0 {
				fill = unchanged[i].DeepCopy()
				unchanged = slices.Delete(unchanged, i, i+1)
			}
		}
		if fill == nil {
			fill = pl.newSlice(want.ports, t)
		}
		fill.Endpoints = append(fill.Endpoints, want.set.PopSorted(pl.maxPer-len(fill.Endpoints))...)
		if fill.Name == "" {
			out.Create = append(out.Create, fill)
		} else {
			updated = append(updated, fill)
		}
	}
	out.Update = updated
	return out
}

// closestFit returns the index of the slice that n more endpoints fill
// closest to maxPer without going over, or -1.
func closestFit(candidates []*discoveryv1.EndpointSlice, n, maxPer int) int {
	best, bestGap := -1, maxPer
	for i, s := range candidates {
		gap := maxPer - n - len(s.Endpoints)
		if gap >= 0 && gap < bestGap {
			best, bestGap = i, gap
		}
	}
	return best
}

func (pl *planner) newSlice(ports []discoveryv1.EndpointPort, t discoveryv1.AddressType) *discoveryv1.EndpointSlice {
	if ports == nil {
		ports = []discoveryv1.EndpointPort{}
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: sliceset.NamePrefix(pl.svc.Name),
			Namespace:    pl.svc.Namespace,
			Labels:       pl.labels(),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: pl.svc.Name, UID: pl.svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		AddressType: t,
		Ports:       ports,
		Endpoints:   []discoveryv1.Endpoint{},
	}
}

// labels are the Service's labels (but the reserved ones), the headless
// marker for a Service without a ClusterIP, and the two labels that tie a
// slice to its Service and to this controller.
func (pl *planner) labels() map[string]string {
	out := map[string]string{}
	for k, v := range pl.svc.Labels {
		if k != discoveryv1.LabelServiceName && k != discoveryv1.LabelManagedBy && k != corev1.IsHeadlessService {
			out[k] = v
		}
	}
	if !servicepods.HasClusterIP(pl.svc) {
		out[corev1.IsHeadlessService] = ""
	}
	out[discoveryv1.LabelServiceName] = pl.svc.Name
	out[discoveryv1.LabelManagedBy] = controllerName
	return out
}

func ownedBy(s *discoveryv1.EndpointSlice, svc *corev1.Service) bool {
	for _, o := range s.OwnerReferences {
		if o.UID == svc.UID && o.Kind == "Service" && o.APIVersion == "v1" {
			return true
		}
	}
	return false
}

func isPlaceholder(s *discoveryv1.EndpointSlice, t discoveryv1.AddressType) bool {
	return len(s.Endpoints) == 0 && len(s.Ports) == 0 && s.AddressType == t
}
