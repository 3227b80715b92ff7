package resourcequota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	corev1 "k8s.io/api/core/v1"
	resourcev1 "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	quotainstall "k8s.io/kubernetes/pkg/quota/v1/install"
)

// typedResources are measured from full (transformed) objects: their
// evaluators read their specs. Every other resource is only counted, from
// a metadata-only cache.
var typedResources = map[schema.GroupResource]bool{
	{Resource: "pods"}:                    true,
	{Resource: "services"}:                true,
	{Resource: "persistentvolumeclaims"}:  true,
	resourcev1.Resource("resourceclaims"): true,
}

// monitors hands the evaluators a cache of each resource they measure,
// started the first time a quota needs it, and tells the controller when
// an object of a resource was deleted or stopped counting.
type monitors struct {
	typed    informers.SharedInformerFactory
	meta     metadata.Interface
	onChange func(gr schema.GroupResource, namespace string)
	ignored  map[schema.GroupResource]struct{}
	logger   *slog.Logger
	filter   func(gvr schema.GroupVersionResource, old, cur any) bool

	mu      sync.Mutex
	ctx     context.Context // nil until start
	watched map[schema.GroupVersionResource]*monitor
	// counted are the resources discovery added an object-count evaluator
	// for (the others are the built-in evaluators, never removed).
	counted map[schema.GroupResource]schema.GroupVersionResource
}

type monitor struct {
	gvr    schema.GroupVersionResource
	inf    informers.GenericInformer
	cancel context.CancelFunc // nil for typed informers (the factory runs them)
}

func newMonitors(typed informers.SharedInformerFactory, meta metadata.Interface,
	onChange func(schema.GroupResource, string), logger *slog.Logger) *monitors {
	return &monitors{typed: typed, meta: meta, onChange: onChange, logger: logger,
		filter:  quotainstall.DefaultUpdateFilter(),
		watched: map[schema.GroupVersionResource]*monitor{}, counted: map[schema.GroupResource]schema.GroupVersionResource{}}
}

// informerFor is the evaluators' generic.InformerForResourceFunc. A cache
// made here is started at once (or when the controller starts); until it
// has synced, the evaluators' listers report it unsynced and the quota is
// retried.
func (m *monitors) informerFor(gvr schema.GroupVersionResource) (informers.GenericInformer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mon, ok := m.watched[gvr]; ok {
		return mon.inf, nil
	}
	mon := &monitor{gvr: gvr}
	if typedResources[gvr.GroupResource()] {
		inf, err := m.typed.ForResource(gvr)
		if err != nil {
			return nil, fmt.Errorf("no cache for %s: %w", gvr, err)
		}
		mon.inf = inf
	} else {
		mon.inf = metadatainformer.NewFilteredMetadataInformer(m.meta, gvr, corev1.NamespaceAll, 0,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, nil)
		if err := mon.inf.Informer().SetTransform(stripMeta); err != nil {
			return nil, err
		}
	}
	if _, err := mon.inf.Informer().AddEventHandler(m.handler(gvr)); err != nil {
		return nil, fmt.Errorf("watching %s: %w", gvr, err)
	}
	m.watched[gvr] = mon
	if m.ctx != nil {
		m.run(mon)
	}
	m.logger.Info("measuring usage", "resource", gvr.String())
	return mon.inf, nil
}

func (m *monitors) handler(gvr schema.GroupVersionResource) cache.ResourceEventHandler {
	changed := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			ns, _, _ := cache.SplitMetaNamespaceKey(key)
			m.onChange(gvr.GroupResource(), ns)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, cur any) {
			if m.filter(gvr, old, cur) {
				changed(cur)
			}
		},
		DeleteFunc: changed,
	}
}

// run starts mon; m.mu is held.
func (m *monitors) run(mon *monitor) {
	if typedResources[mon.gvr.GroupResource()] {
		m.typed.Start(m.ctx.Done()) // starts only what is not running yet
		return
	}
	if mon.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	mon.cancel = cancel
	go mon.inf.Informer().RunWithContext(ctx)
}

// start starts every cache made so far and those made later, until ctx ends.
func (m *monitors) start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ctx = ctx
	for _, mon := range m.watched {
		m.run(mon)
	}
}

// discover adds an object-count evaluator (count/<resource>.<group>) for
// every namespaced resource the API serves that can be created, listed,
// watched and deleted, and removes those of resources no longer served.
// It reports whether the set changed.
func (m *monitors) discover(ctx context.Context, d discovery.DiscoveryInterface, registry quota.Registry) bool {
	lists, err := d.ServerPreferredNamespacedResources()
	partial := err != nil
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		m.logger.Warn("discovering resources to count", "error", err)
		return false
	}
	quotable := discovery.FilteredBy(discovery.SupportsAllVerbs{Verbs: []string{"create", "list", "watch", "delete"}}, lists)
	gvrs, err := discovery.GroupVersionResources(quotable)
	if err != nil {
		m.logger.Warn("parsing discovered resources", "error", err)
		return false
	}
	lister := generic.ListerFuncForResourceFunc(m.informerFor)
	changed := false
	seen := map[schema.GroupResource]bool{}
	for gvr := range gvrs {
		gr := gvr.GroupResource()
		if _, skip := m.ignored[gr]; skip {
			continue
		}
		seen[gr] = true
		if registry.Get(gr) != nil {
			continue
		}
		registry.Add(generic.NewObjectCountEvaluator(gr, generic.ListResourceUsingListerFunc(lister, gvr), ""))
		m.mu.Lock()
		m.counted[gr] = gvr
		m.mu.Unlock()
		changed = true
	}
	if partial {
		return changed // a group that failed discovery is not known to be gone
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for gr, gvr := range m.counted {
		if seen[gr] {
			continue
		}
		if e := registry.Get(gr); e != nil {
			registry.Remove(e)
		}
		delete(m.counted, gr)
		if mon, ok := m.watched[gvr]; ok && mon.cancel != nil {
			mon.cancel()
			delete(m.watched, gvr)
		}
		m.logger.Info("no longer served; stopped counting", "resource", gvr.String())
		changed = true
	}
	return changed
}

// stripMeta keeps of a counted object only what a cache needs to key it:
// counting reads nothing else.
func stripMeta(obj any) (any, error) {
	if o, ok := obj.(*metav1.PartialObjectMetadata); ok {
		o.ManagedFields, o.Annotations, o.Labels, o.OwnerReferences, o.Finalizers = nil, nil, nil, nil, nil
	}
	return obj, nil
}
