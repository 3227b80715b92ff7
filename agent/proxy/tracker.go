package proxy

import (
	"maps"
	"slices"
	"sync"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// changeTracker keeps the Services and EndpointSlices the informers
// delivered, grouped by service, and which services changed since the
// last sync (as kube-proxy's change trackers): a sync then recomputes
// those services alone, so its cost follows the change, not the cluster.
type changeTracker struct {
	mu       sync.Mutex
	services map[string]*v1.Service
	// slices holds each service's EndpointSlices by slice name; owner
	// gives the service of each slice (namespace/name), so that a slice
	// whose service label changed leaves its old service.
	slices map[string]map[string]*discovery.EndpointSlice
	owner  map[string]string
	dirty  map[string]bool
}

func newChangeTracker() *changeTracker {
	return &changeTracker{services: map[string]*v1.Service{}, slices: map[string]map[string]*discovery.EndpointSlice{},
		owner: map[string]string{}, dirty: map[string]bool{}}
}

// serviceChange is one changed service as it is now: svc nil when it is
// gone, slices its EndpointSlices.
type serviceChange struct {
	key    string
	svc    *v1.Service
	slices []*discovery.EndpointSlice
}

// handler feeds the tracker from an informer and calls changed after
// each event.
func (t *changeTracker) handler(changed func()) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false); changed() },
		UpdateFunc: func(_, obj any) { t.observe(obj, false); changed() },
		DeleteFunc: func(obj any) { t.observe(obj, true); changed() },
	}
}

func (t *changeTracker) observe(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj, deleted = d.Obj, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch o := obj.(type) {
	case *v1.Service:
		key := o.Namespace + "/" + o.Name
		if deleted {
			delete(t.services, key)
		} else {
			t.services[key] = o
		}
		t.dirty[key] = true
	case *discovery.EndpointSlice:
		t.observeSlice(o, deleted)
	}
}

func (t *changeTracker) observeSlice(s *discovery.EndpointSlice, deleted bool) {
	id := s.Namespace + "/" + s.Name
	if old, ok := t.owner[id]; ok {
		delete(t.slices[old], s.Name)
		if len(t.slices[old]) == 0 {
			delete(t.slices, old)
		}
		delete(t.owner, id)
		t.dirty[old] = true
	}
	name := s.Labels[discovery.LabelServiceName]
	if deleted || name == "" {
		return
	}
	key := s.Namespace + "/" + name
	if t.slices[key] == nil {
		t.slices[key] = map[string]*discovery.EndpointSlice{}
	}
	t.slices[key][s.Name] = s
	t.owner[id] = key
	t.dirty[key] = true
}

// take returns the services changed since the last take, sorted by key,
// and forgets that they changed.
func (t *changeTracker) take() []serviceChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]serviceChange, 0, len(t.dirty))
	for _, key := range slices.Sorted(maps.Keys(t.dirty)) {
		c := serviceChange{key: key, svc: t.services[key]}
		for _, name := range slices.Sorted(maps.Keys(t.slices[key])) {
			c.slices = append(c.slices, t.slices[key][name])
		}
		out = append(out, c)
	}
	clear(t.dirty)
	return out
}

// portView is one family's ServicePorts by service (namespace/name), as
// the proxier keeps them between syncs, and the services whose ports
// changed since the previous sync.
type portView struct {
	bySvc map[string][]ServicePort
	// changed lists the services to compare with what is installed; nil
	// means every service (a view built from a whole snapshot).
	changed []string
}

// viewOf groups a whole snapshot by service.
func viewOf(ports []ServicePort) *portView {
	v := &portView{bySvc: map[string][]ServicePort{}}
	for _, sp := range ports {
		key := sp.svcKey()
		v.bySvc[key] = append(v.bySvc[key], sp)
	}
	return v
}

// all is every port, sorted as Snapshot sorts them.
func (v *portView) all() []ServicePort {
	var out []ServicePort
	for _, key := range slices.Sorted(maps.Keys(v.bySvc)) {
		out = append(out, v.bySvc[key]...)
	}
	return out
}

// update recomputes the changed services' ports for family on node,
// returning the problems Snapshot found in them.
func (v *portView) update(changes []serviceChange, node string, family v1.IPFamily) []error {
	var problems []error
	v.changed = v.changed[:0]
	for _, c := range changes {
		var ports []ServicePort
		if c.svc != nil {
			var errs []error
			ports, errs = Snapshot([]*v1.Service{c.svc}, c.slices, node, family)
			problems = append(problems, errs...)
		}
		_, had := v.bySvc[c.key]
		if len(ports) == 0 {
			delete(v.bySvc, c.key)
		} else {
			v.bySvc[c.key] = ports
		}
		if had || len(ports) > 0 {
			v.changed = append(v.changed, c.key)
		}
	}
	return problems
}

// svcKey is the port's service, namespace/name.
func (sp *ServicePort) svcKey() string { return sp.Namespace + "/" + sp.Name }

// count is the number of ports.
func (v *portView) count() int {
	n := 0
	for _, ports := range v.bySvc {
		n += len(ports)
	}
	return n
}
