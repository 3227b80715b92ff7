//lint:file-ignore SA1019 v1 Endpoints are deprecated but still served and read; this controller keeps them (or mirrors them) on purpose.

package endpointslicemirroring

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/sliceset"
	"github.com/keelson/keelson/plugins/sdk"
)

// reconcile makes the mirrored slices of the Endpoints key match it, or
// removes them when it should not be mirrored (gone, opted out, or its
// Service is gone or has a selector, whose slices the endpointslice
// controller writes).
func (c *controller) reconcile(ctx context.Context, key string) (sdk.Result, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.Result{}, nil
	}
	existing, err := c.mirrored(ns, name)
	if err != nil {
		return sdk.Result{}, err
	}
	ep, err := c.endpoints.Endpoints(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, err
	}
	if ep == nil || !shouldMirror(ep) {
		return sdk.Result{}, c.deleteAll(ctx, key, existing)
	}
	svc, err := c.services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return sdk.Result{}, err
	}
	if svc == nil || svc.Spec.Selector != nil {
		return sdk.Result{}, c.deleteAll(ctx, key, existing)
	}
	if c.tracker.Stale(key, existing) {
		return sdk.Result{}, fmt.Errorf("mirrored endpointslices of %s: cache is older than this controller's last write", key)
	}
	want, invalid, skipped := desiredSlices(ep, c.maxPer)
	if invalid > 0 {
		c.recorder.Eventf(ep, corev1.EventTypeWarning, "InvalidIPAddress",
			"Skipped %d invalid IP addresses when mirroring to EndpointSlices", invalid)
	}
	if skipped > 0 {
		c.recorder.Eventf(ep, corev1.EventTypeWarning, "TooManyAddressesToMirror",
			"A max of %d addresses can be mirrored to EndpointSlices per Endpoints subset. %d addresses were skipped", c.maxPer, skipped)
	}
	return sdk.Result{}, c.apply(ctx, key, ep, planMirror(want, existing))
}

// desiredSlices returns the slices mirroring ep, one per address type and
// port set (without names), and how many addresses were invalid IPs or
// over the per-subset cap.
func desiredSlices(ep *corev1.Endpoints, maxPer int) (map[string]*discoveryv1.EndpointSlice, int, int) {
	type group struct {
		ports           []discoveryv1.EndpointPort
		ready, notReady []corev1.EndpointAddress
	}
	// Subsets with the same ports are one subset (Endpoints may be written
	// unpacked), and the cap applies to it as a whole.
	groups := map[string]*group{}
	for _, s := range ep.Subsets {
		ports := slicePorts(s.Ports)
		k := sliceset.PortsKey(ports)
		g, ok := groups[k]
		if !ok {
			g = &group{ports: ports}
			groups[k] = g
		}
		g.ready = append(g.ready, s.Addresses...)
		g.notReady = append(g.notReady, s.NotReadyAddresses...)
	}
	out := map[string]*discoveryv1.EndpointSlice{}
	invalid, skipped := 0, 0
	for _, pk := range slices.Sorted(maps.Keys(groups)) {
		g := groups[pk]
		added := 0
		for i, addr := range slices.Concat(g.ready, g.notReady) {
			if added >= maxPer {
				skipped += len(g.ready) + len(g.notReady) - i
				break
			}
			e, t, ok := endpointFor(addr, i < len(g.ready))
			if !ok {
				invalid++
				continue
			}
			added++
			k := string(t) + "/" + pk
			s, ok := out[k]
			if !ok {
				s = newSlice(ep, g.ports, t)
				out[k] = s
			}
			s.Endpoints = append(s.Endpoints, *e)
		}
	}
	for _, s := range out {
		dedup(s)
	}
	return out, invalid, skipped
}

// dedup keeps one endpoint per identity (the last, so an address listed
// both ready and not ready is not ready) and sorts them.
func dedup(s *discoveryv1.EndpointSlice) {
	set := sliceset.Set{}
	for i := range s.Endpoints {
		set.Insert(&s.Endpoints[i])
	}
	s.Endpoints = set.PopSorted(len(set))
}

func endpointFor(addr corev1.EndpointAddress, ready bool) (*discoveryv1.Endpoint, discoveryv1.AddressType, bool) {
	ip, err := netip.ParseAddr(addr.IP)
	if err != nil {
		return nil, "", false
	}
	ip = ip.Unmap()
	t := discoveryv1.AddressTypeIPv4
	if ip.Is6() {
		t = discoveryv1.AddressTypeIPv6
	}
	e := &discoveryv1.Endpoint{
		Addresses:  []string{ip.String()},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		TargetRef:  addr.TargetRef,
		NodeName:   addr.NodeName,
	}
	if addr.Hostname != "" {
		e.Hostname = ptr.To(addr.Hostname)
	}
	return e, t, true
}

func slicePorts(ports []corev1.EndpointPort) []discoveryv1.EndpointPort {
	out := make([]discoveryv1.EndpointPort, 0, len(ports))
	for _, p := range ports {
		out = append(out, discoveryv1.EndpointPort{
			Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(p.Protocol), AppProtocol: p.AppProtocol,
		})
	}
	sliceset.SortPorts(out)
	return out
}

// newSlice is an empty slice mirroring ep: ep's labels and annotations
// (but the ones about ep's own last change), tied to ep by owner reference
// and labels.
func newSlice(ep *corev1.Endpoints, ports []discoveryv1.EndpointPort, t discoveryv1.AddressType) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: sliceset.NamePrefix(ep.Name),
			Namespace:    ep.Namespace,
			Labels:       maps.Clone(ep.Labels),
			Annotations:  maps.Clone(ep.Annotations),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Endpoints", Name: ep.Name, UID: ep.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		AddressType: t,
		Ports:       ports,
		Endpoints:   []discoveryv1.Endpoint{},
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels[discoveryv1.LabelServiceName] = ep.Name
	s.Labels[discoveryv1.LabelManagedBy] = controllerName
	delete(s.Annotations, corev1.EndpointsLastChangeTriggerTime)
	delete(s.Annotations, corev1.LastAppliedConfigAnnotation)
	return s
}

// planMirror keeps one slice per address type and port set: the first
// existing one, rewritten only if it differs; any others are deleted.
func planMirror(want map[string]*discoveryv1.EndpointSlice, existing []*discoveryv1.EndpointSlice) sliceset.Changes {
	byKey := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range existing {
		k := string(s.AddressType) + "/" + sliceset.PortsKey(s.Ports)
		byKey[k] = append(byKey[k], s)
	}
	var p sliceset.Changes
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w, have := want[k], byKey[k]
		slices.SortFunc(have, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
		switch {
		case len(have) == 0:
			p.Create = append(p.Create, w)
		case !sameSlice(have[0], w):
			w.Name, w.GenerateName, w.ResourceVersion = have[0].Name, "", have[0].ResourceVersion
			p.Update = append(p.Update, w)
		}
		if len(have) > 1 {
			p.Delete = append(p.Delete, have[1:]...)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		if _, ok := want[k]; !ok {
			p.Delete = append(p.Delete, byKey[k]...)
		}
	}
	p.Recycle(func(*discoveryv1.EndpointSlice) bool { return true })
	return p
}

func sameSlice(have, want *discoveryv1.EndpointSlice) bool {
	if !maps.Equal(have.Labels, want.Labels) || !maps.Equal(have.Annotations, want.Annotations) ||
		len(have.Endpoints) != len(want.Endpoints) || len(have.OwnerReferences) != 1 ||
		have.OwnerReferences[0].UID != want.OwnerReferences[0].UID {
		return false
	}
	set := sliceset.Set{}
	for i := range want.Endpoints {
		set.Insert(&want.Endpoints[i])
	}
	for i := range have.Endpoints {
		w, ok := set[sliceset.EndpointKey(&have.Endpoints[i])]
		if !ok || !sliceset.SameEndpoint(w, &have.Endpoints[i]) {
			return false
		}
	}
	return true
}

func (c *controller) apply(ctx context.Context, key string, ep *corev1.Endpoints, p sliceset.Changes) error {
	api := c.client.DiscoveryV1().EndpointSlices(ep.Namespace)
	if ep.DeletionTimestamp == nil {
		for _, s := range p.Create {
			created, err := api.Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
					return nil
				}
				return fmt.Errorf("creating an EndpointSlice mirroring endpoints %s: %w", key, err)
			}
			c.tracker.Wrote(key, created)
			c.logger.Info("created mirrored endpointslice", "endpoints", key, "slice", created.Name, "endpoints_count", len(created.Endpoints))
		}
	}
	for _, s := range p.Update {
		updated, err := api.Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("updating EndpointSlice %s mirroring endpoints %s: %w", s.Name, key, err)
		}
		c.tracker.Wrote(key, updated)
		c.logger.Info("updated mirrored endpointslice", "endpoints", key, "slice", s.Name, "endpoints_count", len(s.Endpoints))
	}
	return c.deleteSlices(ctx, key, p.Delete)
}

func (c *controller) deleteAll(ctx context.Context, key string, existing []*discoveryv1.EndpointSlice) error {
	if len(existing) == 0 {
		c.tracker.Forget(key)
		return nil
	}
	return c.deleteSlices(ctx, key, existing)
}

func (c *controller) deleteSlices(ctx context.Context, key string, del []*discoveryv1.EndpointSlice) error {
	for _, s := range del {
		err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting EndpointSlice %s mirroring endpoints %s: %w", s.Name, key, err)
		}
		c.tracker.Deleted(key, s)
		c.logger.Info("deleted mirrored endpointslice", "endpoints", key, "slice", s.Name)
	}
	return nil
}
