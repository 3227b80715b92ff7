package metricsserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	certutil "k8s.io/client-go/util/cert"
	aggregator "k8s.io/kube-aggregator/pkg/client/clientset_generated/clientset"

	"github.com/keelson/keelson/plugins/sdk"
)

// republishEvery is how often the published objects and the front-proxy
// configuration are checked, so an edit or a CA rotation is followed.
const republishEvery = time.Minute

// server is one run of the plugin.
type server struct {
	cfg     Config
	env     sdk.Env
	client  kubernetes.Interface
	clock   clockwork.Clock
	store   *store
	pods    cache.SharedIndexInformer
	scraper *scraper
	source  metricsSource
}

func (s *server) run(ctx context.Context) error {
	go s.pods.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), s.pods.HasSynced) {
		return nil // stopping
	}
	host := serviceName + "." + namespace + ".svc"
	advertise := net.ParseIP(s.cfg.AdvertiseAddress)
	if advertise.IsLoopback() {
		// An EndpointSlice may not hold a loopback address, so
		// kube-apiserver could never be sent here: say so on the
		// plugin's status rather than fail (a restart cannot help).
		err := sdk.ConfigErrorf("advertiseAddress", "advertiseAddress %s is a loopback address, which kube-apiserver's aggregator cannot be pointed at: run the server with --advertise-address (or --bind-address) set to a non-loopback IP, or disable the %s plugin", advertise, Name)
		s.env.NotReady("the metrics API cannot be published", err)
		s.env.Logger.Error("not serving the metrics API", "err", err)
		<-ctx.Done()
		return nil
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(host, []net.IP{advertise}, []string{serviceName, serviceName + "." + namespace})
	if err != nil {
		return fmt.Errorf("making the serving certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("loading the serving certificate: %w", err)
	}
	agg, err := aggregator.NewForConfig(s.env.RESTConfig)
	if err != nil {
		return fmt.Errorf("building the apiregistration client: %w", err)
	}
	proxy := &frontProxy{}
	reg := &registrar{client: s.client, agg: agg, reg: registration{advertise: advertise, port: int32(s.cfg.Port), caBundle: certPEM}}
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(s.cfg.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s (plugins.config.%s.port): %w", addr, Name, err)
	}
	srv := &http.Server{
		Handler:           newAPI(proxy, s.client, s.source).handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.env.Logger.Handler(), slog.LevelDebug),
	}
	s.env.Logger.Info("serving the metrics API", "address", addr, "advertise", s.cfg.AdvertiseAddress, "resolution", s.cfg.MetricResolution.Duration)
	var wg sync.WaitGroup
	wg.Go(func() { s.scraper.run(ctx) })
	q := sdk.NewQueue[string]("metricsserver-registration")
	q.Add(apiServiceName)
	wg.Go(func() {
		sdk.RunWorkers(ctx, q, 1, func(ctx context.Context, _ string) (sdk.Result, error) {
			return sdk.Result{RequeueAfter: republishEvery}, s.publish(ctx, reg, proxy)
		}, s.env.Logger)
	})
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	err = srv.ServeTLS(l, "", "")
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// publish reads the front-proxy configuration and brings the published
// objects up to date.
func (s *server) publish(ctx context.Context, reg *registrar, proxy *frontProxy) error {
	cm, err := s.client.CoreV1().ConfigMaps(authConfigMapNamespace).Get(ctx, authConfigMapName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading %s/%s: %w", authConfigMapNamespace, authConfigMapName, err)
	}
	if err := proxy.set(cm); err != nil {
		return err
	}
	return reg.ensure(ctx)
}

// newPodCache is a metadata-only informer of the pods not finished: the
// API selects pods by namespace, name and labels and copies their labels,
// and needs nothing else of them.
func newPodCache(cfg *rest.Config) (cache.SharedIndexInformer, error) {
	client, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building the metadata client: %w", err)
	}
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	inf := metadatainformer.NewFilteredMetadataInformer(client, gvr, metav1.NamespaceAll, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, func(o *metav1.ListOptions) {
			o.FieldSelector = "status.phase!=" + string(v1.PodSucceeded) + ",status.phase!=" + string(v1.PodFailed)
		}).Informer()
	if err := inf.SetTransform(podTransform); err != nil {
		return nil, err
	}
	return inf, nil
}

// podTransform keeps a pod's namespace, name, UID and labels.
func podTransform(obj any) (any, error) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{TypeMeta: m.TypeMeta, ObjectMeta: metaOf(m)}, nil
}

// metaOf is the part of an object's metadata the plugin keeps.
func metaOf(o metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(),
		ResourceVersion: o.GetResourceVersion(), Labels: o.GetLabels()}
}

// noHandler registers an informer with the factory; the plugin reads the
// cache only.
type noHandler struct{}

func (noHandler) OnAdd(any, bool)   {}
func (noHandler) OnUpdate(any, any) {}
func (noHandler) OnDelete(any)      {}
