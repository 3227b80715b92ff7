package garbagecollector

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

// Index names on every monitor's cache.
const (
	byOwner = "owner" // the UIDs an object's ownerReferences point at
	byUID   = "uid"
)

// ignored resources are never collected (as upstream: events are cleaned
// up by their TTL).
var ignored = map[schema.GroupResource]bool{
	{Resource: "events"}:                         true,
	{Group: "events.k8s.io", Resource: "events"}: true,
}

// resource is one kind the API serves, in its preferred version.
type resource struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
	verbs      []string
}

// monitor caches the metadata of every object of one resource.
type monitor struct {
	resource
	informer cache.SharedIndexInformer
	// hasSynced reports whether the cache holds every object (the
	// informer's HasSynced; tests fill caches by hand).
	hasSynced func() bool
	stop      context.CancelFunc
	started   time.Time
}

// item is a cached object and the resource it belongs to.
type item struct {
	res *resource
	obj *metav1.PartialObjectMetadata
}

// monitors is the set of watched resources and what the API serves.
type monitors struct {
	client  metadata.Interface
	handler func(*monitor) cache.ResourceEventHandler
	logger  *slog.Logger

	mu    sync.RWMutex
	byGR  map[schema.GroupResource]*monitor
	kinds map[schema.GroupKind]*resource // every served kind, watched or not
}

// slim is the transform of every monitor: the garbage collector reads only
// identity, owners, finalizers and deletion state.
func slim(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		OwnerReferences:   m.OwnerReferences,
		Finalizers:        m.Finalizers,
		DeletionTimestamp: m.DeletionTimestamp,
	}}, nil
}

var indexers = cache.Indexers{
	byOwner: func(obj any) ([]string, error) {
		m, ok := obj.(*metav1.PartialObjectMetadata)
		if !ok {
			return nil, nil
		}
		out := make([]string, 0, len(m.OwnerReferences))
		for _, r := range m.OwnerReferences {
			out = append(out, string(r.UID))
		}
		return out, nil
	},
	byUID: func(obj any) ([]string, error) {
		if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
			return []string{string(m.UID)}, nil
		}
		return nil, nil
	},
}

// discover returns every served resource in its preferred version. A
// partial failure (one API group down) returns what could be discovered
// and the error.
func discover(d discovery.ServerResourcesInterface) (map[schema.GroupResource]*resource, error) {
	lists, err := d.ServerPreferredResources()
	var groupErr *discovery.ErrGroupDiscoveryFailed
	if err != nil && !errors.As(err, &groupErr) {
		return nil, err
	}
	out := map[schema.GroupResource]*resource{}
	for _, l := range lists {
		gv, perr := schema.ParseGroupVersion(l.GroupVersion)
		if perr != nil {
			continue
		}
		for _, r := range l.APIResources {
			if r.Kind == "" || strings.Contains(r.Name, "/") {
				continue // subresources
			}
			out[gv.WithResource(r.Name).GroupResource()] = &resource{
				gvr: gv.WithResource(r.Name), kind: r.Kind, namespaced: r.Namespaced, verbs: r.Verbs,
			}
		}
	}
	return out, err
}

// watchable reports whether the collector monitors r: it must be able to
// list, watch and delete it.
func (r *resource) watchable() bool {
	for _, v := range []string{"list", "watch", "delete"} {
		if !slices.Contains(r.verbs, v) {
			return false
		}
	}
	return !ignored[r.gvr.GroupResource()]
}

// sync starts a monitor for every newly served watchable resource and
// stops those of resources no longer served. Resources of API groups whose
// discovery failed keep their monitors.
func (ms *monitors) sync(ctx context.Context, served map[schema.GroupResource]*resource, partial bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	kinds := map[schema.GroupKind]*resource{}
	for _, r := range served {
		gk := schema.GroupKind{Group: r.gvr.Group, Kind: r.kind}
		if old, dup := kinds[gk]; !dup || (!old.watchable() && r.watchable()) {
			kinds[gk] = r
		}
	}
	if partial {
		// Keep knowing the kinds of groups that failed this time.
		for gk, r := range ms.kinds {
			if _, ok := kinds[gk]; !ok {
				kinds[gk] = r
			}
		}
	}
	ms.kinds = kinds
	for gr, r := range served {
		if m, ok := ms.byGR[gr]; (ok && m.gvr == r.gvr) || !r.watchable() {
			continue
		} else if ok {
			m.stop() // the preferred version changed: watch the new one
		}
		ms.byGR[gr] = ms.start(ctx, r)
		ms.logger.Info("monitoring resource", "resource", r.gvr.String())
	}
	for gr, m := range ms.byGR {
		if _, ok := served[gr]; !ok && !partial {
			m.stop()
			delete(ms.byGR, gr)
			ms.logger.Info("stopped monitoring resource", "resource", m.gvr.String())
		}
	}
}

func (ms *monitors) start(ctx context.Context, r *resource) *monitor {
	inf := metadatainformer.NewFilteredMetadataInformer(ms.client, r.gvr, metav1.NamespaceAll, 0, indexers, nil).Informer()
	if err := inf.SetTransform(slim); err != nil {
		ms.logger.Error("setting transform", "resource", r.gvr.String(), "error", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{resource: *r, informer: inf, hasSynced: inf.HasSynced, stop: cancel, started: time.Now()}
	if _, err := inf.AddEventHandler(ms.handler(m)); err != nil {
		ms.logger.Error("adding event handler", "resource", r.gvr.String(), "error", err)
	}
	go inf.RunWithContext(ctx)
	return m
}

// stopAll stops every monitor.
func (ms *monitors) stopAll() {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for _, m := range ms.byGR {
		m.stop()
	}
	ms.byGR = map[schema.GroupResource]*monitor{}
}

// synced reports whether every monitor's cache has synced, except those
// that have tried for longer than patience (a resource whose list keeps
// failing must not hold up the collector forever).
func (ms *monitors) synced(patience time.Duration) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	for _, m := range ms.byGR {
		if !m.hasSynced() && time.Since(m.started) < patience {
			return false
		}
	}
	return true
}

// kindOf returns the resource of an ownerReference's apiVersion and kind.
// Any version of the group counts: owners are looked up by name and UID.
func (ms *monitors) kindOf(apiVersion, kind string) (*resource, bool) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return nil, false
	}
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	r, ok := ms.kinds[schema.GroupKind{Group: gv.Group, Kind: kind}]
	return r, ok
}

// monitor returns the monitor of gr, if any.
func (ms *monitors) monitor(gr schema.GroupResource) *monitor {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	return ms.byGR[gr]
}

// get returns the cached object gr ns/name and whether gr is monitored.
func (ms *monitors) get(gr schema.GroupResource, ns, name string) (*metav1.PartialObjectMetadata, bool) {
	m := ms.monitor(gr)
	if m == nil {
		return nil, false
	}
	key := name
	if ns != "" {
		key = ns + "/" + name
	}
	obj, ok, err := m.informer.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return nil, true
	}
	return obj.(*metav1.PartialObjectMetadata), true
}

// lookup returns the cached objects that index as v under index, across
// every monitor.
func (ms *monitors) lookup(index string, v types.UID) []item {
	ms.mu.RLock()
	all := slices.Collect(maps.Values(ms.byGR))
	ms.mu.RUnlock()
	var out []item
	for _, m := range all {
		objs, err := m.informer.GetIndexer().ByIndex(index, string(v))
		if err != nil {
			continue
		}
		for _, o := range objs {
			out = append(out, item{res: &m.resource, obj: o.(*metav1.PartialObjectMetadata)})
		}
	}
	return out
}

// dependents returns the cached objects with an ownerReference to uid.
func (ms *monitors) dependents(uid types.UID) []item { return ms.lookup(byOwner, uid) }

// withUID returns the cached objects with this UID (one, unless caches
// disagree for a moment).
func (ms *monitors) withUID(uid types.UID) []item { return ms.lookup(byUID, uid) }
