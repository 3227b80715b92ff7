package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// dataPlane serves the current table on one port of the node.
type dataPlane struct {
	ings, classes, svcs, slices cache.SharedIndexInformer
	table                       atomic.Pointer[table]
	rp                          *httputil.ReverseProxy
}

// runNode is the node part: it rebuilds the table after every change to
// Ingresses, classes, Services or EndpointSlices (one queue key, worked off
// by sdk.RunWorkers) and serves HTTP with it.
func runNode(ctx context.Context, env sdk.Env) error {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building API client: %w", err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	d := &dataPlane{ings: f.Networking().V1().Ingresses().Informer(), classes: f.Networking().V1().IngressClasses().Informer(),
		svcs: f.Core().V1().Services().Informer(), slices: f.Discovery().V1().EndpointSlices().Informer(), rp: reverseProxy()}
	d.table.Store(&table{})
	q := sdk.NewQueue[struct{}]("tinyingress-table")
	if err := onChange(func() { q.Add(struct{}{}) }, d.ings, d.classes, d.svcs, d.slices); err != nil {
		return err
	}
	defer f.Shutdown()
	if err := startAndSync(ctx, f); err != nil || ctx.Err() != nil {
		return err // nil: asked to stop while syncing
	}
	l, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listening on port %d (config port): %w", cfg.Port, err)
	}
	srv := &http.Server{Handler: d, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
			env.Logger.Error("serving", "err", err)
		}
	}()
	defer srv.Close()
	env.Ready(fmt.Sprintf("serving on port %d", cfg.Port))
	sdk.RunWorkers(ctx, q, 1, d.rebuild, env.Logger)
	return nil
}

func (d *dataPlane) rebuild(context.Context, struct{}) (sdk.Result, error) {
	var classes []*networkingv1.IngressClass
	for _, o := range d.classes.GetStore().List() {
		classes = append(classes, o.(*networkingv1.IngressClass))
	}
	w := world{
		service: func(ns, name string) *v1.Service {
			o, ok, _ := d.svcs.GetStore().GetByKey(ns + "/" + name)
			if !ok {
				return nil
			}
			return o.(*v1.Service)
		},
		slices: func(ns, service string) []*discoveryv1.EndpointSlice {
			var out []*discoveryv1.EndpointSlice
			for _, o := range d.slices.GetStore().List() {
				if s := o.(*discoveryv1.EndpointSlice); s.Namespace == ns && s.Labels[discoveryv1.LabelServiceName] == service {
					out = append(out, s)
				}
			}
			return out
		},
	}
	for _, o := range d.ings.GetStore().List() {
		if ing := o.(*networkingv1.Ingress); ours(ing, classes) {
			w.ingresses = append(w.ingresses, ing)
		}
	}
	d.table.Store(build(w))
	return sdk.Result{}, nil
}

// reverseProxy sends a request to the endpoint ServeHTTP chose, keeping
// the Host header and setting X-Forwarded-*.
func reverseProxy() *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", pr.In.Context().Value(endpointKey{}).(string)
		},
	}
}

type endpointKey struct{}

// ServeHTTP routes each request by the current table, round robin over the
// route's endpoints.
func (d *dataPlane) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := d.table.Load().lookup(r.Host, r.URL.Path)
	if !ok {
		http.Error(w, "404 no tinyingress rule matches", http.StatusNotFound)
		return
	}
	if len(rt.endpoints) == 0 {
		http.Error(w, "503 no ready endpoints", http.StatusServiceUnavailable)
		return
	}
	ep := rt.endpoints[rt.next.Add(1)%uint64(len(rt.endpoints))]
	d.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), endpointKey{}, ep)))
}
