package sdk

import (
	"context"
	"reflect"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/informers/admissionregistration"
	"k8s.io/client-go/informers/apiserverinternal"
	"k8s.io/client-go/informers/apps"
	"k8s.io/client-go/informers/autoscaling"
	"k8s.io/client-go/informers/batch"
	"k8s.io/client-go/informers/certificates"
	"k8s.io/client-go/informers/coordination"
	"k8s.io/client-go/informers/core"
	"k8s.io/client-go/informers/discovery"
	"k8s.io/client-go/informers/events"
	"k8s.io/client-go/informers/extensions"
	"k8s.io/client-go/informers/flowcontrol"
	"k8s.io/client-go/informers/internalinterfaces"
	"k8s.io/client-go/informers/lifecycle"
	"k8s.io/client-go/informers/networking"
	"k8s.io/client-go/informers/node"
	"k8s.io/client-go/informers/policy"
	"k8s.io/client-go/informers/rbac"
	"k8s.io/client-go/informers/resource"
	"k8s.io/client-go/informers/scheduling"
	"k8s.io/client-go/informers/storage"
	"k8s.io/client-go/informers/storagemigration"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// sharedInformers is the one informer factory of a group process
// (ServeGroup): built from the group's own read identity, started for the
// process's lifetime, and seen by each member run through a memberView.
//
// Its cache keeps whole objects but for managedFields: each member's own
// transform drops what that member does not read, and the union of what
// the members read is, for pods, nodes and services, nearly everything;
// keeping more than a member needs is always correct, keeping less never
// is. One such copy is still far smaller than one trimmed copy per member.
type sharedInformers struct {
	factory informers.SharedInformerFactory
	client  kubernetes.Interface
	// stop is never closed: the informers live as long as the process, so
	// a member restarted in it finds its caches warm.
	stop chan struct{}
}

func newSharedInformers(client kubernetes.Interface) *sharedInformers {
	return &sharedInformers{
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(StripManagedFields)),
		client:  client,
		stop:    make(chan struct{}),
	}
}

// view is a run of member's factory over the shared one.
func (s *sharedInformers) view(member string) *memberView {
	return &memberView{SharedInformerFactory: s.factory, stop: s.stop, member: member, client: s.client}
}

// memberView is the informers.SharedInformerFactory a member's
// InformerSetup gets in a group process. Informers come from the shared
// factory; what the view adds is bookkeeping: which informers this run
// uses (WaitForCacheSync waits for those only) and which event handlers it
// registered, removed by Shutdown so that a member restarted inside the
// process does not leave its old handlers running on the shared caches.
type memberView struct {
	informers.SharedInformerFactory
	stop   <-chan struct{}
	member string
	client kubernetes.Interface
	// private are the informers a member built with its own newFunc (a
	// label-selected cache, say): not shared, as another member asking
	// for the same type may filter differently; they run with the run.
	private map[reflect.Type]cache.SharedIndexInformer

	mu   sync.Mutex
	used map[reflect.Type]cache.SharedIndexInformer
	regs []handlerRegistration
}

type handlerRegistration struct {
	inf cache.SharedIndexInformer
	reg cache.ResourceEventHandlerRegistration
}

// InformerFor is what every typed informer of the view asks for its cache.
func (v *memberView) InformerFor(obj runtime.Object, newFunc internalinterfaces.NewInformerFunc) cache.SharedIndexInformer {
	if !isDefaultInformer(newFunc) {
		return v.privateInformer(obj, newFunc)
	}
	inf := v.SharedInformerFactory.InformerFor(obj, newFunc)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.used == nil {
		v.used = map[reflect.Type]cache.SharedIndexInformer{}
	}
	v.used[reflect.TypeOf(obj)] = inf
	return &trackedInformer{SharedIndexInformer: inf, view: v}
}

// isDefaultInformer reports whether newFunc is a typed informer's own
// (client-go's generated defaultInformer), which builds the same cache
// for every member: only those are shared.
func isDefaultInformer(newFunc internalinterfaces.NewInformerFunc) bool {
	fn := goruntime.FuncForPC(reflect.ValueOf(newFunc).Pointer())
	return fn != nil && strings.HasPrefix(fn.Name(), "k8s.io/client-go/informers/") && strings.HasSuffix(fn.Name(), ".defaultInformer-fm")
}

// privateInformer is the run's own informer for obj, from newFunc.
func (v *memberView) privateInformer(obj runtime.Object, newFunc internalinterfaces.NewInformerFunc) cache.SharedIndexInformer {
	typ := reflect.TypeOf(obj)
	v.mu.Lock()
	defer v.mu.Unlock()
	if inf, ok := v.private[typ]; ok {
		return inf
	}
	inf := newFunc(v.client, 0)
	_ = inf.SetTransform(StripManagedFields) // fails only once started
	if v.private == nil {
		v.private = map[reflect.Type]cache.SharedIndexInformer{}
	}
	v.private[typ] = inf
	return inf
}

// ForResource is the shared generic informer for gvr, started at once for
// the process's lifetime (a member that runs it itself, as the resource
// quota's monitors do, then finds it running), its handlers tracked.
func (v *memberView) ForResource(gvr schema.GroupVersionResource) (informers.GenericInformer, error) {
	g, err := v.SharedInformerFactory.ForResource(gvr)
	if err != nil {
		return nil, err
	}
	inf := g.Informer()
	v.SharedInformerFactory.Start(v.stop)
	return &genericInformer{inf: &trackedInformer{SharedIndexInformer: inf, view: v}, resource: gvr.GroupResource()}, nil
}

type genericInformer struct {
	inf      cache.SharedIndexInformer
	resource schema.GroupResource
}

func (g *genericInformer) Informer() cache.SharedIndexInformer { return g.inf }
func (g *genericInformer) Lister() cache.GenericLister {
	return cache.NewGenericLister(g.inf.GetIndexer(), g.resource)
}

// Start starts the shared informers for the process's lifetime (a
// member's stop channel ends its run, not the caches other members read),
// and the run's private ones until stopCh closes.
func (v *memberView) Start(stopCh <-chan struct{}) {
	v.SharedInformerFactory.Start(v.stop)
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, inf := range v.private {
		go inf.Run(stopCh)
	}
}

// StartWithContext is Start.
func (v *memberView) StartWithContext(ctx context.Context) { v.Start(ctx.Done()) }

// WaitForCacheSync waits for the informers this view handed out.
func (v *memberView) WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool {
	v.mu.Lock()
	used := make(map[reflect.Type]cache.SharedIndexInformer, len(v.used))
	for typ, inf := range v.used {
		used[typ] = inf
	}
	v.mu.Unlock()
	for typ, inf := range v.private {
		used[typ] = inf
	}
	res := make(map[reflect.Type]bool, len(used))
	for typ, inf := range used {
		res[typ] = cache.WaitForCacheSync(stopCh, inf.HasSynced)
	}
	return res
}

// Shutdown removes the event handlers this view registered; the shared
// informers keep running.
func (v *memberView) Shutdown() {
	v.mu.Lock()
	regs := v.regs
	v.regs = nil
	v.mu.Unlock()
	for _, r := range regs {
		_ = r.inf.RemoveEventHandler(r.reg) // fails only for a registration it never had
	}
}

func (v *memberView) track(inf cache.SharedIndexInformer, reg cache.ResourceEventHandlerRegistration, err error) (cache.ResourceEventHandlerRegistration, error) {
	if err == nil {
		v.mu.Lock()
		v.regs = append(v.regs, handlerRegistration{inf: inf, reg: reg})
		v.mu.Unlock()
	}
	return reg, err
}

// trackedInformer records the handlers added through it in its view, and
// keeps the indexes its member adds apart from other members' (two members
// may name different index functions alike): they are registered as
// "MEMBER/NAME" and looked up under NAME through GetIndexer.
type trackedInformer struct {
	cache.SharedIndexInformer
	view *memberView
}

func (t *trackedInformer) indexName(name string) string { return t.view.member + "/" + name }

// AddIndexers adds the member's indexes once: a member restarted in the
// process finds them there, built by the same functions.
func (t *trackedInformer) AddIndexers(indexers cache.Indexers) error {
	have := t.SharedIndexInformer.GetIndexer().GetIndexers()
	add := cache.Indexers{}
	for name, f := range indexers {
		if _, ok := have[t.indexName(name)]; !ok {
			add[t.indexName(name)] = f
		}
	}
	if len(add) == 0 {
		return nil
	}
	return t.SharedIndexInformer.AddIndexers(add)
}

func (t *trackedInformer) GetIndexer() cache.Indexer {
	return &memberIndexer{Indexer: t.SharedIndexInformer.GetIndexer(), t: t}
}

// memberIndexer resolves an index name to the member's own index when it
// added one by that name, else to the informer's (the namespace index).
type memberIndexer struct {
	cache.Indexer
	t *trackedInformer
}

func (m *memberIndexer) name(n string) string {
	if _, ok := m.Indexer.GetIndexers()[m.t.indexName(n)]; ok {
		return m.t.indexName(n)
	}
	return n
}

func (m *memberIndexer) Index(n string, obj any) ([]any, error) {
	return m.Indexer.Index(m.name(n), obj)
}
func (m *memberIndexer) IndexKeys(n, v string) ([]string, error) {
	return m.Indexer.IndexKeys(m.name(n), v)
}
func (m *memberIndexer) ListIndexFuncValues(n string) []string {
	return m.Indexer.ListIndexFuncValues(m.name(n))
}
func (m *memberIndexer) ByIndex(n, v string) ([]any, error)  { return m.Indexer.ByIndex(m.name(n), v) }
func (m *memberIndexer) AddIndexers(ix cache.Indexers) error { return m.t.AddIndexers(ix) }

func (t *trackedInformer) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	reg, err := t.SharedIndexInformer.AddEventHandler(h)
	return t.view.track(t.SharedIndexInformer, reg, err)
}

func (t *trackedInformer) AddEventHandlerWithResyncPeriod(h cache.ResourceEventHandler, p time.Duration) (cache.ResourceEventHandlerRegistration, error) {
	reg, err := t.SharedIndexInformer.AddEventHandlerWithResyncPeriod(h, p)
	return t.view.track(t.SharedIndexInformer, reg, err)
}

func (t *trackedInformer) AddEventHandlerWithOptions(h cache.ResourceEventHandler, o cache.HandlerOptions) (cache.ResourceEventHandlerRegistration, error) {
	reg, err := t.SharedIndexInformer.AddEventHandlerWithOptions(h, o)
	return t.view.track(t.SharedIndexInformer, reg, err)
}

// The API groups, each built on the view so that its typed informers ask
// the view (InformerFor) for their caches.

func (v *memberView) Admissionregistration() admissionregistration.Interface {
	return admissionregistration.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Internal() apiserverinternal.Interface {
	return apiserverinternal.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Apps() apps.Interface { return apps.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Autoscaling() autoscaling.Interface {
	return autoscaling.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Batch() batch.Interface { return batch.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Certificates() certificates.Interface {
	return certificates.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Coordination() coordination.Interface {
	return coordination.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Core() core.Interface { return core.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Discovery() discovery.Interface {
	return discovery.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Events() events.Interface { return events.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Extensions() extensions.Interface {
	return extensions.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Flowcontrol() flowcontrol.Interface {
	return flowcontrol.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Lifecycle() lifecycle.Interface {
	return lifecycle.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Networking() networking.Interface {
	return networking.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Node() node.Interface         { return node.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Policy() policy.Interface     { return policy.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Rbac() rbac.Interface         { return rbac.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Resource() resource.Interface { return resource.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Scheduling() scheduling.Interface {
	return scheduling.New(v, metav1.NamespaceAll, nil)
}
func (v *memberView) Storage() storage.Interface { return storage.New(v, metav1.NamespaceAll, nil) }
func (v *memberView) Storagemigration() storagemigration.Interface {
	return storagemigration.New(v, metav1.NamespaceAll, nil)
}
