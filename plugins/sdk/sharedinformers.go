package sdk

import (
	"context"
	"reflect"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	// stop is never closed: the informers live as long as the process, so
	// a member restarted in it finds its caches warm.
	stop chan struct{}
}

func newSharedInformers(client kubernetes.Interface) *sharedInformers {
	return &sharedInformers{
		factory: informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(StripManagedFields)),
		stop:    make(chan struct{}),
	}
}

// view is a member run's factory over the shared one.
func (s *sharedInformers) view() *memberView {
	return &memberView{SharedInformerFactory: s.factory, stop: s.stop}
}

// memberView is the informers.SharedInformerFactory a member's
// InformerSetup gets in a group process. Informers come from the shared
// factory; what the view adds is bookkeeping: which informers this run
// uses (WaitForCacheSync waits for those only) and which event handlers it
// registered, removed by Shutdown so that a member restarted inside the
// process does not leave its old handlers running on the shared caches.
type memberView struct {
	informers.SharedInformerFactory
	stop <-chan struct{}

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
	inf := v.SharedInformerFactory.InformerFor(obj, newFunc)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.used == nil {
		v.used = map[reflect.Type]cache.SharedIndexInformer{}
	}
	v.used[reflect.TypeOf(obj)] = inf
	return &trackedInformer{SharedIndexInformer: inf, view: v}
}

// Start starts the shared informers for the process's lifetime: a member's
// stop channel ends its run, not the caches other members read.
func (v *memberView) Start(<-chan struct{}) { v.SharedInformerFactory.Start(v.stop) }

// StartWithContext is Start.
func (v *memberView) StartWithContext(context.Context) { v.SharedInformerFactory.Start(v.stop) }

// WaitForCacheSync waits for the informers this view handed out.
func (v *memberView) WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool {
	v.mu.Lock()
	used := make(map[reflect.Type]cache.SharedIndexInformer, len(v.used))
	for typ, inf := range v.used {
		used[typ] = inf
	}
	v.mu.Unlock()
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

// trackedInformer records the handlers added through it in its view.
type trackedInformer struct {
	cache.SharedIndexInformer
	view *memberView
}

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
