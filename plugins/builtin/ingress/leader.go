package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
	gwlisters "sigs.k8s.io/gateway-api/pkg/client/listers/apis/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// infraKey is the queue key of the plugin's own objects (class, Service,
// slice, TLS bundle); every other key is an Ingress's namespace/name.
const infraKey = ""

// leader keeps the class, the Service, its slice, the TLS bundle and the
// Ingresses' status.
type leader struct {
	client  kubernetes.Interface
	cfg     Config
	log     *slog.Logger
	queue   workqueue.TypedRateLimitingInterface[string]
	ings    networkinglisters.IngressLister
	classes networkinglisters.IngressClassLister
	nodes   corelisters.NodeLister
	secrets corelisters.SecretLister
	// services are the plugin's own Services in Namespace (the ingress
	// one and one per Gateway); allServices every Service, for backends.
	services    corelisters.ServiceLister
	allServices corelisters.ServiceLister
	gw          gatewayInformers
	gwClient    gwclient.Interface
	gwClasses   gwlisters.GatewayClassLister
	gwGateways  gwlisters.GatewayLister
}

func runLeader(ctx context.Context, env sdk.Env) error {
	cfg, err := decodeConfig(env.Config)
	if err != nil {
		return err
	}
	setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
		// TLS Secrets only, and the one Service of the plugin, in caches
		// of their own: the other Secrets and Services are never held.
		sf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(sdk.StripManagedFields),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "type=" + string(v1.SecretTypeTLS) }))
		of := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(sdk.StripManagedFields),
			informers.WithNamespace(Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = labels.SelectorFromSet(managedBy).String() }))
		gwf, err := newGatewayFactory(env, sdk.StripManagedFields)
		if err != nil {
			return nil, err
		}
		gwc, err := newGatewayClient(env)
		if err != nil {
			return nil, err
		}
		l := &leader{client: client, cfg: cfg, log: env.Logger, queue: sdk.NewQueue[string](Name),
			ings: f.Networking().V1().Ingresses().Lister(), classes: f.Networking().V1().IngressClasses().Lister(),
			nodes: f.Core().V1().Nodes().Lister(), secrets: sf.Core().V1().Secrets().Lister(),
			services: of.Core().V1().Services().Lister(), allServices: f.Core().V1().Services().Lister(),
			gw: newGatewayInformers(gwf, f), gwClient: gwc,
			gwClasses: gwf.Gateway().V1().GatewayClasses().Lister(), gwGateways: gwf.Gateway().V1().Gateways().Lister()}
		if err := l.watch(f, sf, of); err != nil {
			return nil, err
		}
		sf.Start(ctx.Done())
		of.Start(ctx.Done())
		gwf.Start(ctx.Done())
		return func(ctx context.Context) error {
			defer sf.Shutdown()
			defer of.Shutdown()
			defer gwf.Shutdown()
			for typ, ok := range gwf.WaitForCacheSync(ctx.Done()) {
				if !ok && ctx.Err() == nil {
					return fmt.Errorf("informer cache for %v did not sync", typ)
				}
			}
			for _, x := range []informers.SharedInformerFactory{sf, of} {
				for typ, ok := range x.WaitForCacheSync(ctx.Done()) {
					if !ok && ctx.Err() == nil {
						return fmt.Errorf("informer cache for %v did not sync", typ)
					}
				}
			}
			l.queue.Add(infraKey)
			l.queue.Add(gatewayKey)
			sdk.RunWorkers(ctx, l.queue, 2, l.sync, env.Logger)
			return nil
		}, nil
	}
	return sdk.InformerPlugin(Name, version, setup, informers.WithTransform(trimForLeader)).Run(ctx, env)
}

// watch registers the event handlers: any change may alter the plugin's
// own objects; an Ingress change also its status.
func (l *leader) watch(f, sf, of informers.SharedInformerFactory) error {
	infra := func(any) { l.queue.Add(infraKey); l.queue.Add(gatewayKey) }
	gw := func(any) { l.queue.Add(gatewayKey) }
	onGateway := cache.ResourceEventHandlerFuncs{AddFunc: gw, UpdateFunc: func(_, o any) { gw(o) }, DeleteFunc: gw}
	handlers := map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		f.Networking().V1().IngressClasses().Informer(): cache.ResourceEventHandlerFuncs{AddFunc: infra, UpdateFunc: func(_, o any) { infra(o) }, DeleteFunc: infra},
		f.Core().V1().Nodes().Informer():                cache.ResourceEventHandlerFuncs{AddFunc: infra, UpdateFunc: func(_, o any) { infra(o) }, DeleteFunc: infra},
		sf.Core().V1().Secrets().Informer():             cache.ResourceEventHandlerFuncs{AddFunc: infra, UpdateFunc: func(_, o any) { infra(o) }, DeleteFunc: infra},
		of.Core().V1().Services().Informer():            cache.ResourceEventHandlerFuncs{AddFunc: infra, UpdateFunc: func(_, o any) { infra(o) }, DeleteFunc: infra},
		f.Networking().V1().Ingresses().Informer(): cache.ResourceEventHandlerFuncs{
			AddFunc:    l.ingressChanged,
			UpdateFunc: func(_, o any) { l.ingressChanged(o) },
			DeleteFunc: infra,
		},
	}
	for _, inf := range append(l.gw.all(), f.Core().V1().Services().Informer()) {
		handlers[inf] = onGateway
	}
	for inf, h := range handlers {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	return nil
}

func (l *leader) ingressChanged(o any) {
	if key, err := cache.MetaNamespaceKeyFunc(o); err == nil {
		l.queue.Add(key)
	}
	l.queue.Add(infraKey)
}

func (l *leader) sync(ctx context.Context, key string) (sdk.Result, error) {
	switch key {
	case gatewayKey:
		return sdk.Result{}, l.syncGateways(ctx)
	case infraKey:
	default:
		return sdk.Result{}, l.syncStatus(ctx, key)
	}
	classes, err := l.classes.List(labels.Everything())
	if err != nil {
		return sdk.Result{}, err
	}
	// Each step is independent: one failing (and retried) holds up no other.
	var errs []error
	for _, step := range []func(context.Context, []*networkingv1.IngressClass) error{l.ensureClass, l.ensureService, l.ensureSlice, l.ensureBundle} {
		errs = append(errs, step(ctx, classes))
	}
	// The address may have changed: every Ingress of ours rechecks.
	ings, err := l.ings.List(labels.Everything())
	if err != nil {
		return sdk.Result{}, err
	}
	for _, ing := range ings {
		if Ours(ing, classes) {
			l.queue.Add(ing.Namespace + "/" + ing.Name)
		}
	}
	return sdk.Result{}, errors.Join(errs...)
}

// ensureClass creates the class when missing; a class that exists is the
// user's to change (its default annotation included) and is left alone.
func (l *leader) ensureClass(ctx context.Context, classes []*networkingv1.IngressClass) error {
	for _, c := range classes {
		if c.Name == ClassName {
			if c.Spec.Controller != ControllerName {
				l.log.Warn("IngressClass belongs to another controller; Ingresses naming it are not served here", "class", ClassName, "controller", c.Spec.Controller)
			}
			return nil
		}
	}
	_, err := l.client.NetworkingV1().IngressClasses().Create(ctx, desiredClass(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating IngressClass %s: %w", ClassName, err)
	}
	return nil
}

func (l *leader) ensureService(ctx context.Context, _ []*networkingv1.IngressClass) error {
	svcs := l.client.CoreV1().Services(Namespace)
	got, err := l.services.Services(Namespace).Get(ServiceName)
	switch {
	case apierrors.IsNotFound(err):
		if _, err := svcs.Create(ctx, desiredService(l.cfg), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Service %s/%s: %w", Namespace, ServiceName, err)
		}
		return nil
	case err != nil:
		return err
	case portsMatch(got.Spec.Ports, l.cfg):
		return nil
	}
	upd := got.DeepCopy()
	upd.Spec.Ports = servicePorts(l.cfg)
	if _, err := svcs.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating the ports of Service %s/%s: %w", Namespace, ServiceName, err)
	}
	return nil
}

func (l *leader) ensureSlice(ctx context.Context, _ []*networkingv1.IngressClass) error {
	nodes, err := l.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	return l.applySlice(ctx, desiredSlice(l.cfg, nodes))
}

// applySlice creates want (in Namespace) or updates the slice of its name
// to its labels, endpoints and ports, when they differ.
func (l *leader) applySlice(ctx context.Context, want *discoveryv1.EndpointSlice) error {
	c := l.client.DiscoveryV1().EndpointSlices(Namespace)
	got, err := c.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := c.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating EndpointSlice %s/%s: %w", Namespace, want.Name, err)
		}
		return nil
	case err != nil:
		return err
	case reflect.DeepEqual(got.Endpoints, want.Endpoints) && reflect.DeepEqual(got.Ports, want.Ports) && maps.Equal(got.Labels, want.Labels):
		return nil
	}
	upd := got.DeepCopy()
	upd.Labels, upd.Endpoints, upd.Ports, upd.AddressType = want.Labels, want.Endpoints, want.Ports, want.AddressType
	if _, err := c.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating EndpointSlice %s/%s: %w", Namespace, want.Name, err)
	}
	return nil
}

// ensureBundle publishes the TLS pairs the Ingresses of ours name.
func (l *leader) ensureBundle(ctx context.Context, classes []*networkingv1.IngressClass) error {
	all, err := l.ings.List(labels.Everything())
	if err != nil {
		return err
	}
	ours := slices.DeleteFunc(all, func(i *networkingv1.Ingress) bool { return !Ours(i, classes) })
	data, problems := Bundle(ours, func(ns, name string) *v1.Secret {
		s, err := l.secrets.Secrets(ns).Get(name)
		if err != nil {
			return nil
		}
		return s
	})
	for _, p := range problems {
		l.log.Warn("TLS section not served", "problem", p)
	}
	if l.gw.classes != nil {
		gatewayBundle(data, l.gw.world(nil), func(ns, name string) *v1.Secret {
			s, err := l.secrets.Secrets(ns).Get(name)
			if err != nil {
				return nil
			}
			return s
		})
	}
	c := l.client.CoreV1().Secrets(Namespace)
	got, err := c.Get(ctx, BundleName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		s := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: BundleName, Namespace: Namespace, Labels: maps.Clone(managedBy)},
			Type: v1.SecretTypeOpaque, Data: data}
		if _, err := c.Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating Secret %s/%s: %w", Namespace, BundleName, err)
		}
		return nil
	case err != nil:
		return err
	case maps.EqualFunc(got.Data, data, func(a, b []byte) bool { return string(a) == string(b) }):
		return nil
	}
	upd := got.DeepCopy()
	upd.Data = data
	if _, err := c.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating Secret %s/%s: %w", Namespace, BundleName, err)
	}
	return nil
}

// syncStatus writes the Service's addresses into an Ingress of ours.
func (l *leader) syncStatus(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return sdk.TerminalError(err)
	}
	ing, err := l.ings.Ingresses(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	classes, err := l.classes.List(labels.Everything())
	if err != nil {
		return err
	}
	svc, _ := l.services.Services(Namespace).Get(ServiceName)
	want := ingressStatus(svc)
	if !Ours(ing, classes) {
		// An Ingress moved to another class loses the address we wrote;
		// another controller's address is left alone.
		if len(want.Ingress) == 0 || !reflect.DeepEqual(ing.Status.LoadBalancer, want) {
			return nil
		}
		want = networkingv1.IngressLoadBalancerStatus{}
	}
	if reflect.DeepEqual(ing.Status.LoadBalancer, want) || (len(want.Ingress) == 0 && len(ing.Status.LoadBalancer.Ingress) == 0) {
		return nil
	}
	upd := ing.DeepCopy()
	upd.Status.LoadBalancer = want
	if _, err := l.client.NetworkingV1().Ingresses(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("writing the status of Ingress %s: %w", key, err)
	}
	return nil
}

// trimForLeader keeps of a Node what the slice is made of.
func trimForLeader(obj any) (any, error) {
	if s, ok := obj.(*v1.Service); ok {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, ResourceVersion: s.ResourceVersion},
			Spec: v1.ServiceSpec{Ports: s.Spec.Ports, Type: s.Spec.Type}}, nil
	}
	if ns, ok := obj.(*v1.Namespace); ok {
		return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: ns.Labels, ResourceVersion: ns.ResourceVersion}}, nil
	}
	n, ok := obj.(*v1.Node)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	t := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, ResourceVersion: n.ResourceVersion, UID: n.UID},
		Status: v1.NodeStatus{Addresses: n.Status.Addresses}}
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			t.Status.Conditions = []v1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return t, nil
}
