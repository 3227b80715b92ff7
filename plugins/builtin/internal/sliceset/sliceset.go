// Package sliceset holds what the endpointslice and endpointslicemirroring
// controllers share about EndpointSlices: the identity of an endpoint
// across rewrites (so a pod becoming ready updates its endpoint in place
// rather than moving it), the key of a port set, a tracker that tells when
// the informer cache is older than the controller's own last write, and
// the watch of the slices a controller manages.
package sliceset

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
)

// EndpointKey identifies an endpoint: its addresses, hostname and target,
// but not its conditions, node or zone, which may change in place.
func EndpointKey(ep *discoveryv1.Endpoint) string {
	addrs := slices.Clone(ep.Addresses)
	slices.Sort(addrs)
	var b strings.Builder
	b.WriteString(strings.Join(addrs, ","))
	b.WriteByte('|')
	if ep.Hostname != nil {
		b.WriteString(*ep.Hostname)
	}
	b.WriteByte('|')
	if ep.TargetRef != nil {
		b.WriteString(ep.TargetRef.Namespace + "/" + ep.TargetRef.Name)
	}
	return b.String()
}

// Set is a set of endpoints keyed by EndpointKey.
type Set map[string]*discoveryv1.Endpoint

// Insert adds ep, replacing an endpoint with the same key.
func (s Set) Insert(ep *discoveryv1.Endpoint) { s[EndpointKey(ep)] = ep }

// PopSorted removes and returns the endpoints in key order, at most n.
func (s Set) PopSorted(n int) []discoveryv1.Endpoint {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]discoveryv1.Endpoint, 0, min(n, len(keys)))
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, *s[k])
		delete(s, k)
	}
	return out
}

// SameEndpoint reports whether two endpoints with the same key are equal
// in everything else (conditions, node, zone, hints, target), ignoring the
// target's resourceVersion. It compares field by field: it runs for every
// endpoint of a Service on every pod event.
func SameEndpoint(a, b *discoveryv1.Endpoint) bool {
	return boolPtr(a.Conditions.Ready, b.Conditions.Ready) &&
		boolPtr(a.Conditions.Serving, b.Conditions.Serving) &&
		boolPtr(a.Conditions.Terminating, b.Conditions.Terminating) &&
		strPtr(a.NodeName, b.NodeName) && strPtr(a.Zone, b.Zone) && strPtr(a.Hostname, b.Hostname) &&
		sameTarget(a.TargetRef, b.TargetRef) &&
		maps.Equal(a.DeprecatedTopology, b.DeprecatedTopology) &&
		((a.Hints == nil && b.Hints == nil) || equality.Semantic.DeepEqual(a.Hints, b.Hints))
}

func boolPtr(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func strPtr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func sameTarget(a, b *corev1.ObjectReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	a2, b2 := *a, *b
	a2.ResourceVersion, b2.ResourceVersion = "", ""
	return a2 == b2
}

// PortsKey identifies a set of ports regardless of order.
func PortsKey(ports []discoveryv1.EndpointPort) string {
	keys := make([]string, len(ports))
	for i, p := range ports {
		keys[i] = portKey(p)
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}

func portKey(p discoveryv1.EndpointPort) string {
	str := func(s *string) string {
		if s == nil {
			return "-"
		}
		return *s
	}
	port := "-"
	if p.Port != nil {
		port = strconv.Itoa(int(*p.Port))
	}
	proto := "-"
	if p.Protocol != nil {
		proto = string(*p.Protocol)
	}
	return str(p.Name) + "|" + port + "|" + proto + "|" + str(p.AppProtocol)
}

// SortPorts orders ports by name, then number, then protocol.
func SortPorts(ports []discoveryv1.EndpointPort) {
	slices.SortFunc(ports, func(a, b discoveryv1.EndpointPort) int {
		return cmp.Compare(portKey(a), portKey(b))
	})
}

// Tracker remembers the generation of every EndpointSlice a controller
// wrote and the slices it deleted, per owner (namespace/name). While the
// informer cache shows an older generation, a deleted slice, or misses a
// created one, the cache is stale: reconciling from it could create
// duplicate slices or undo the last write, so the owner is retried later.
type Tracker struct {
	mu sync.Mutex
	// owners maps namespace/name to the slices written for it: UID to the
	// generation written, or deleted for a slice this controller deleted.
	owners map[string]map[types.UID]int64
}

const deleted = -1

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{owners: map[string]map[types.UID]int64{}} }

// Wrote records a slice this controller created or updated.
func (t *Tracker) Wrote(owner string, s *discoveryv1.EndpointSlice) {
	t.set(owner, s.UID, s.Generation)
}

// Deleted records a slice this controller deleted.
func (t *Tracker) Deleted(owner string, s *discoveryv1.EndpointSlice) {
	t.set(owner, s.UID, deleted)
}

func (t *Tracker) set(owner string, uid types.UID, gen int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owners[owner]
	if m == nil {
		m = map[types.UID]int64{}
		t.owners[owner] = m
	}
	m[uid] = gen
}

// ObserveDeletion is called when the cache sees s deleted. It forgets s and
// reports whether this controller had deleted it; a slice someone else
// deleted means the owner must be reconciled again.
func (t *Tracker) ObserveDeletion(owner string, s *discoveryv1.EndpointSlice) (expected bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.owners[owner]
	gen, ok := m[s.UID]
	delete(m, s.UID)
	return ok && gen == deleted
}

// Forget drops what is known about owner's slices (the owner is gone).
func (t *Tracker) Forget(owner string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.owners, owner)
}

// Stale reports whether cached (owner's slices as the informer has them)
// is older than what this controller wrote. Entries the cache has caught
// up with are dropped as a side effect.
func (t *Tracker) Stale(owner string, cached []*discoveryv1.EndpointSlice) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	want := t.owners[owner]
	if len(want) == 0 {
		return false
	}
	seen := map[types.UID]int64{}
	for _, s := range cached {
		seen[s.UID] = s.Generation
	}
	stale := false
	for uid, gen := range want {
		got, present := seen[uid]
		switch {
		case gen == deleted && present, gen != deleted && (!present || got < gen):
			stale = true
		case gen == deleted && !present:
			delete(want, uid)
		}
	}
	if len(want) == 0 {
		delete(t.owners, owner)
	}
	return stale
}

// Changes are the slice writes of one reconcile.
type Changes struct {
	Create, Update, Delete []*discoveryv1.EndpointSlice
}

// Empty reports whether there is nothing to write.
func (c Changes) Empty() bool { return len(c.Create)+len(c.Update)+len(c.Delete) == 0 }

// Recycle turns a create paired with a delete of a slice of the same
// address type that reusable accepts into an update of that slice, saving
// a write and keeping slice names stable.
func (c *Changes) Recycle(reusable func(*discoveryv1.EndpointSlice) bool) {
	for i := 0; i < len(c.Delete) && len(c.Create) > 0; {
		old, s := c.Delete[i], c.Create[len(c.Create)-1]
		if old.AddressType != s.AddressType || !reusable(old) {
			i++
			continue
		}
		s.Name, s.GenerateName, s.ResourceVersion = old.Name, "", old.ResourceVersion
		c.Create = c.Create[:len(c.Create)-1]
		c.Update = append(c.Update, s)
		c.Delete = slices.Delete(c.Delete, i, i+1)
	}
}
