package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// dataPlane is one node's running data plane.
type dataPlane struct {
	env     sdk.Env
	cfg     Config
	proxy   *Proxy
	queue   workqueue.TypedRateLimitingInterface[struct{}] // one key: the whole table
	certs   certCache
	ings    cache.SharedIndexInformer
	classes cache.SharedIndexInformer
	svcs    cache.SharedIndexInformer
	slices  cache.SharedIndexInformer
	bundle  cache.SharedIndexInformer
	gw      gatewayInformers

	mu         sync.Mutex
	listenErrs map[int]error // by port, while it cannot be listened on
}

const bySliceService = "service"

func runNode(ctx context.Context, env sdk.Env) error {
	cfg, err := decodeConfig(env.Config)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	all := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(trimForNode))
	bundle := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + BundleName }))
	gwf, err := newGatewayFactory(env, trimGatewayForNode)
	if err != nil {
		return err
	}
	defer all.Shutdown()
	defer bundle.Shutdown()
	defer gwf.Shutdown()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics, err := NewMetrics(sdk.MetricsRegisterer())
	if err != nil {
		return fmt.Errorf("registering the data plane's metrics: %w", err)
	}
	d := &dataPlane{env: env, cfg: cfg, proxy: NewProxy(env.Logger, cfg.HTTPSRedirect, metrics), queue: sdk.NewQueue[struct{}]("ingress-data-plane"), listenErrs: map[int]error{},
		ings: all.Networking().V1().Ingresses().Informer(), classes: all.Networking().V1().IngressClasses().Informer(),
		svcs: all.Core().V1().Services().Informer(), slices: all.Discovery().V1().EndpointSlices().Informer(),
		bundle: bundle.Core().V1().Secrets().Informer(), gw: newGatewayInformers(gwf, all)}
	if err := d.slices.AddIndexers(cache.Indexers{bySliceService: sliceService}); err != nil {
		return err
	}
	for _, inf := range append([]cache.SharedIndexInformer{d.ings, d.classes, d.svcs, d.slices, d.bundle}, d.gw.all()...) {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { d.poke() }, UpdateFunc: func(any, any) { d.poke() }, DeleteFunc: func(any) { d.poke() },
		}); err != nil {
			return err
		}
	}
	env.NotReady("waiting for informer caches to sync", nil)
	all.Start(ctx.Done())
	bundle.Start(ctx.Done())
	gwf.Start(ctx.Done())
	for typ, ok := range gwf.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	for _, f := range []informers.SharedInformerFactory{all, bundle} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("informer cache for %v did not sync", typ)
			}
		}
	}
	// The caches are filled: from here the heap grows by requests.
	go TuneGC(ctx, cfg, env.Logger)
	return d.run(ctx)
}

// poke queues a rebuild of the whole table.
func (d *dataPlane) poke() { d.queue.Add(struct{}{}) }

// run serves until ctx ends; sdk.RunWorkers rebuilds the table after every
// change, one rebuild at a time.
func (d *dataPlane) run(ctx context.Context) error {
	httpSrv := &http.Server{Handler: d.proxy, ReadHeaderTimeout: 30 * time.Second, Protocols: new(http.Protocols), ConnContext: connContext}
	httpSrv.Protocols.SetHTTP1(true)
	httpSrv.Protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge (gRPC without TLS)
	tlsSrv := &http.Server{Handler: d.proxy, ReadHeaderTimeout: 30 * time.Second, ConnContext: connContext,
		TLSConfig: &tls.Config{GetCertificate: d.proxy.GetCertificate, MinVersion: tls.VersionTLS12}}
	// The first table is in place before the first connection.
	d.rebuild()
	go d.serve(ctx, httpSrv, d.cfg.HTTPPort, false)
	go d.serve(ctx, tlsSrv, d.cfg.HTTPSPort, true)
	defer shutdown(httpSrv, tlsSrv)
	d.poke()
	sdk.RunWorkers(ctx, d.queue, 1, d.reconcile, d.env.Logger)
	return nil
}

// reconcile rebuilds the table and reports the data plane's state.
func (d *dataPlane) reconcile(context.Context, struct{}) (sdk.Result, error) {
	n, problems := d.rebuild()
	if err := d.listenError(); err != nil {
		d.env.NotReady("listening", err)
		return sdk.Result{}, nil
	}
	msg := fmt.Sprintf("serving %d Ingresses on ports %d and %d", n, d.cfg.HTTPPort, d.cfg.HTTPSPort)
	if len(problems) > 0 {
		msg += fmt.Sprintf("; %d problems: %s", len(problems), strings.Join(problems[:min(len(problems), 5)], "; "))
	}
	d.env.Ready(msg)
	return sdk.Result{}, nil
}

// setListenError records (nil: clears) why a port cannot be served and
// queues a status report.
func (d *dataPlane) setListenError(port int, err error) {
	d.mu.Lock()
	if err == nil {
		delete(d.listenErrs, port)
	} else {
		d.listenErrs[port] = err
	}
	d.mu.Unlock()
	d.poke()
}

func (d *dataPlane) listenError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for _, port := range []int{d.cfg.HTTPPort, d.cfg.HTTPSPort} {
		if err := d.listenErrs[port]; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func shutdown(srvs ...*http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range srvs {
		_ = s.Shutdown(ctx)
	}
}

// serve listens on port until ctx ends, retrying every few seconds while
// the port is taken; it reports each listen error (nil once listening).
func (d *dataPlane) serve(ctx context.Context, srv *http.Server, port int, withTLS bool) {
	addr := net.JoinHostPort(d.cfg.BindAddress, portString(port))
	for ctx.Err() == nil {
		l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
		if err != nil {
			d.setListenError(port, fmt.Errorf("listening on %s (httpPort/httpsPort in plugins.config.ingress): %w", addr, err))
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
			continue
		}
		d.setListenError(port, nil)
		if withTLS {
			err = srv.ServeTLS(l, "", "")
		} else {
			err = srv.Serve(l)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return
		}
		d.setListenError(port, fmt.Errorf("serving on %s: %w", addr, err))
	}
}

// rebuild builds and installs a new table from the caches.
func (d *dataPlane) rebuild() (int, []string) {
	var classes []*networkingv1.IngressClass
	for _, o := range d.classes.GetStore().List() {
		classes = append(classes, o.(*networkingv1.IngressClass))
	}
	var ours []*networkingv1.Ingress
	for _, o := range d.ings.GetStore().List() {
		if ing := o.(*networkingv1.Ingress); Ours(ing, classes) {
			ours = append(ours, ing)
		}
	}
	var bundle map[string][]byte
	if o, ok, _ := d.bundle.GetStore().GetByKey(Namespace + "/" + BundleName); ok {
		bundle = o.(*v1.Secret).Data
	}
	used := map[[32]byte]bool{}
	t := Build(World{
		Ingresses: ours,
		Service: func(ns, name string) *v1.Service {
			o, ok, _ := d.svcs.GetStore().GetByKey(ns + "/" + name)
			if !ok {
				return nil
			}
			return o.(*v1.Service)
		},
		Slices: func(ns, name string) []*discoveryv1.EndpointSlice {
			objs, _ := d.slices.GetIndexer().ByIndex(bySliceService, ns+"/"+name)
			out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
			for _, o := range objs {
				out = append(out, o.(*discoveryv1.EndpointSlice))
			}
			return out
		},
		Cert: func(ns, name string) (*tls.Certificate, error) {
			c, k, err := bundleCert(bundle, ns, name)
			if err != nil {
				return nil, err
			}
			return d.certs.get(c, k, used)
		},
		Gateway: d.gw.world(statusAddress),
	})
	d.certs.prune(used)
	d.proxy.Set(t)
	slices.Sort(t.Problems)
	return len(ours), slices.Compact(t.Problems)
}

func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		return []string{s.Namespace + "/" + name}, nil
	}
	return nil, nil
}

// trimForNode keeps of each object what the data plane reads.
func trimForNode(obj any) (any, error) {
	switch o := obj.(type) {
	case *networkingv1.Ingress:
		o.ManagedFields, o.Status = nil, networkingv1.IngressStatus{}
	case *v1.Namespace:
		o.ObjectMeta = metav1.ObjectMeta{Name: o.Name, Labels: o.Labels, ResourceVersion: o.ResourceVersion}
		o.Spec, o.Status = v1.NamespaceSpec{}, v1.NamespaceStatus{}
	case *v1.Service:
		o.ObjectMeta = metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, ResourceVersion: o.ResourceVersion}
		o.Spec = v1.ServiceSpec{Ports: o.Spec.Ports, Type: o.Spec.Type}
		o.Status = v1.ServiceStatus{}
	case *discoveryv1.EndpointSlice:
		o.ManagedFields, o.Annotations = nil, nil
		for i := range o.Endpoints {
			o.Endpoints[i].Hints, o.Endpoints[i].TargetRef, o.Endpoints[i].DeprecatedTopology = nil, nil, nil
		}
	default:
		return sdk.StripManagedFields(obj)
	}
	return obj, nil
}
