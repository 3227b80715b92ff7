package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/keelson/keelson/internal/debugserver"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/keelson/keelson/agent/images"
	"github.com/keelson/keelson/agent/kubeletapi"
	"github.com/keelson/keelson/agent/node"
	"github.com/keelson/keelson/agent/pods"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/servicenet"
	"github.com/keelson/keelson/agent/volumes"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/localstorage"
	"github.com/keelson/keelson/internal/nodeproof"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// serve registers the node and runs everything until ctx ends: the node
// object, the informers, the pods, the kubelet API, the service network, the
// images directory and (for a standalone agent) gossip.
func (a *Agent) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { a.proxy.Serve(ctx) })
	if err := a.waitForAPI(ctx); err != nil {
		return err
	}
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})

	errc := make(chan error, 4)
	fail := func(what string) func(error) {
		return func(err error) {
			if err != nil {
				errc <- fmt.Errorf("agent: %s: %w", what, err)
			}
		}
	}
	wg.Go(func() { fail("debug server")(debugserver.Serve(ctx, a.log, "--debug-listen", a.cfg.DebugListen)) })
	// Made first: the service network registers its metrics there. The pod
	// counts read a.pods only when scraped (a.pods is made later: a method
	// value a.pods.Pods would bind the nil it is now).
	a.metrics = newMetrics(func() []*v1.Pod {
		if a.pods == nil {
			return nil
		}
		return a.pods.Pods()
	})
	// The service network, when it runs, caches every Service: the pods
	// read theirs from it rather than from a second watch.
	svcnet, err := a.startServiceNetwork(ctx, &wg, fail("service network"))
	if err != nil {
		return err
	}
	inf := a.newInformers(svcnet == nil)
	services := inf.servicesFunc(svcnet)
	if err := a.newPods(services, recorder); err != nil {
		return err
	}
	defer func() {
		cancel() // Shutdown waits for the informers, which stop with ctx
		inf.shutdown()
	}()
	if err := inf.start(ctx, a); err != nil {
		return err
	}
	if svcnet != nil {
		if err := waitForServices(ctx, svcnet, errc); err != nil || ctx.Err() != nil {
			return err
		}
	}
	api, err := a.kubeletAPI()
	if err != nil {
		return err
	}
	wg.Go(func() { fail("kubelet API")(api.Serve(ctx)) })
	wg.Go(func() { a.node.Run(ctx) })
	current, err := inf.pods.Lister().List(everything)
	if err != nil {
		return err
	}
	wg.Go(func() { fail("pods")(a.pods.Run(ctx, current)) })
	wg.Go(func() { a.creds.RenewLoop(ctx, time.Hour) })
	imgs := images.NewDir(config.ImagesDir(a.cfg.DataDir), filepath.Join(a.dir, "imported-images.json"), a.rt, a.log)
	wg.Go(func() { imgs.Run(ctx, 5*time.Second) })
	if !a.opts.Embedded {
		if err := a.joinGossip(ctx); err != nil {
			return err
		}
		member := a.member()
		wg.Go(func() {
			select {
			case <-ctx.Done():
			case err := <-member.Fatal():
				fail("gossip")(err)
			}
		})
		wg.Go(func() { a.followServers(ctx) })
		wg.Go(func() { a.watchAPI(ctx, apiProbeInterval, apiUnreachableAfter) })
	}
	wg.Go(func() { a.runNodePlugins(ctx) })
	a.log.Info("agent ready", "node", a.cfg.NodeName, "ip", a.ip, "kubelet_api", api.Addr().String())
	if a.opts.Ready != nil {
		a.opts.Ready()
	}
	return a.waitForStop(ctx, errc)
}

// waitForServices waits until the service network's Services cache has
// synced, returning early with the network's failure (or nil when ctx ends).
func waitForServices(ctx context.Context, svcnet *servicenet.Network, errc <-chan error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	synced := make(chan struct{})
	go func() {
		if svcnet.WaitForServices(ctx) {
			close(synced)
		}
	}()
	select {
	case <-synced:
		return nil
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

// waitForStop returns when ctx ends (nil), a part fails, or the agent's own
// containerd exits.
func (a *Agent) waitForStop(ctx context.Context, errc <-chan error) error {
	var daemonDone <-chan struct{}
	if a.daemon != nil {
		daemonDone = a.daemon.Done()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case <-daemonDone:
		return fmt.Errorf("%w: %v; see %s", errStopped, a.daemon.Err(), filepath.Join(a.dir, "containerd", "containerd.log"))
	}
}

// registerNode creates (or takes over) the Node object.
func (a *Agent) registerNode(ctx context.Context) error {
	var err error
	a.node, err = node.New(node.Options{
		Name:        a.cfg.NodeName,
		IP:          a.ip,
		KubeletPort: a.cfg.Kubelet.Port,
		Labels:      a.cfg.NodeLabels,
		Taints:      a.registerTaints(),
		ExternalIPs: a.externalIPs(),
		// Under an external cloud provider, the addresses are the cloud's
		// once it set them, as kubelet leaves them.
		KeepAddresses: a.cfg.CloudProvider == config.CloudProviderExternal,
		// How this node's heartbeat is proven, and where its local-path
		// volumes live (for the provisioner).
		Annotations:    a.nodeAnnotations(),
		MaxPods:        a.cfg.Kubelet.MaxPods,
		SystemReserved: a.cfg.Kubelet.SystemReserved,
		EvictionHard:   a.cfg.Kubelet.EvictionHard,
		DataDir:        a.dir,
		KubeletVersion: a.opts.KubeletVersion,
		LeaseDuration:  a.cfg.Kubelet.NodeLeaseDuration.Duration,
		StatusInterval: a.cfg.Kubelet.NodeStatusUpdateFrequency.Duration,
		Client:         a.client,
		Runtime:        nodeRuntime{a.rt},
		Logger:         a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.node.SetNetworkReady(func() bool { return a.node.PodCIDR() != "" })
	return retry(ctx, a.log, "registering the node", a.node.Register)
}

// externalIPs are the --node-external-ip addresses (validated by config).
func (a *Agent) externalIPs() []net.IP {
	var out []net.IP
	for _, s := range a.cfg.NodeExternalIPs {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// nodeAnnotations are the annotations the agent keeps on its Node.
func (a *Agent) nodeAnnotations() map[string]string {
	ann := map[string]string{localstorage.StorageDirAnnotation: a.storageDir()}
	maps.Copy(ann, proofAnnotations(a.opts.Embedded))
	return ann
}

// proofAnnotations are the Node annotations that tell the leader how this
// node's gossip heartbeat is proven. A standalone agent is its own gossip
// member and proves it with its node key: the leader accepts no unproven
// member as its heartbeat. An embedded agent has no member of its own: its
// node's heartbeat is its server's member, which carries no node-key proof,
// so requiring one would mark every server's node unreachable 40 s after
// it starts.
func proofAnnotations(embedded bool) map[string]string {
	if embedded {
		return nil
	}
	return map[string]string{nodeproof.RequiredAnnotation: "true"}
}

// agentInformers are the agent's caches: its own Node, its pods (both
// field-selected) and, without a service network (which caches them),
// every Service for the pods' environment.
type agentInformers struct {
	factories []informers.SharedInformerFactory
	node      coreinformers.NodeInformer
	pods      coreinformers.PodInformer
	services  coreinformers.ServiceInformer // nil: the service network's
}

// servicesFunc lists the Services the pods see: from the service network's
// cache when it runs, else from the agent's own.
func (inf *agentInformers) servicesFunc(svcnet *servicenet.Network) func() []*v1.Service {
	lister := func() corelisters.ServiceLister {
		if svcnet != nil {
			return svcnet.Services()
		}
		return inf.services.Lister()
	}()
	return func() []*v1.Service {
		list, _ := lister.List(everything)
		return list
	}
}

func (a *Agent) newInformers(watchServices bool) *agentInformers {
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String()
	}))
	podInformers := informers.NewSharedInformerFactoryWithOptions(a.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}),
		informers.WithTransform(stripManagedFields))
	inf := &agentInformers{
		factories: []informers.SharedInformerFactory{nodeInformers, podInformers},
		node:      nodeInformers.Core().V1().Nodes(),
		pods:      podInformers.Core().V1().Pods(),
	}
	if watchServices {
		svcInformers := informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithTransform(stripManagedFields))
		inf.factories = append(inf.factories, svcInformers)
		inf.services = svcInformers.Core().V1().Services()
	}
	return inf
}

// start registers the handlers, starts the caches and waits for them.
func (inf *agentInformers) start(ctx context.Context, a *Agent) error {
	if _, err := inf.node.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.observeNode(obj) },
		UpdateFunc: func(_, obj any) { a.observeNode(obj) },
	}); err != nil {
		return err
	}
	if _, err := inf.pods.Informer().AddEventHandler(a.pods.Handler()); err != nil {
		return err
	}
	if inf.services != nil {
		inf.services.Informer() // registered before Start
	}
	for _, f := range inf.factories {
		f.Start(ctx.Done())
	}
	for _, f := range inf.factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("agent: syncing the %v cache: %w", typ, ctx.Err())
			}
		}
	}
	return nil
}

func (inf *agentInformers) shutdown() {
	for _, f := range inf.factories {
		f.Shutdown()
	}
}

// newPods makes the pod manager.
func (a *Agent) newPods(services func() []*v1.Service, recorder record.EventRecorder) error {
	security, err := a.podSecurity()
	if err != nil {
		return err
	}
	a.volumes = volumes.New(volumes.Options{Client: a.client, Logger: a.log, StorageDir: a.storageDir(), Images: a.rt})
	a.pods = pods.New(pods.Options{
		NodeName:      a.cfg.NodeName,
		ClusterDomain: a.cfg.ClusterDomain,
		ClusterDNS:    ClusterDNS(a.cfg),
		ResolvConf:    a.cfg.Kubelet.ResolvConf,
		Dir:           filepath.Join(a.dir, "pods"),
		CgroupRoot:    a.cfg.Kubelet.CgroupRoot,
		LogMaxSize:    maxLogSize(a.cfg.Kubelet.ContainerLogMaxSize),
		LogMaxFiles:   a.cfg.Kubelet.ContainerLogMaxFiles,
		SyncInterval:  a.cfg.Kubelet.SyncFrequency.Duration,
		Security:      security,
		Client:        a.client,
		Runtime:       a.rt,
		Network:       a.network,
		Volumes:       a.volumes,
		Node:          a.node,
		Services:      services,
		Recorder:      recorder,
		Logger:        a.log,
		ImagePulled:   a.metrics.imagePulled,
		PodStarted: func(_ *v1.Pod, d time.Duration) {
			a.metrics.podStartup.Observe(d.Seconds())
		},
		ProbeMetrics: a.metrics.probes,
	})
	// kubelet_volume_stats_* on /metrics, from the summary's volumes.
	a.metrics.registry.MustRegister(kubeletapi.NewVolumeStatsCollector(a.pods))
	return nil
}

// kubeletAPI listens for the kubelet API (logs, exec, attach, port-forward,
// stats) with the node's serving certificate.
func (a *Agent) kubeletAPI() (*kubeletapi.Server, error) {
	caPool, err := a.creds.CAPool()
	if err != nil {
		return nil, err
	}
	return kubeletapi.Listen(kubeletapi.Options{
		Address:        net.JoinHostPort(a.cfg.Kubelet.Address, strconv.Itoa(a.cfg.Kubelet.Port)),
		NodeName:       a.cfg.NodeName,
		GetCertificate: a.creds.GetServingCertificate,
		ClientCAs:      caPool,
		Client:         a.client,
		Backend:        a.pods,
		Volumes:        a.volumes,
		Errors: kubeletapi.Classifier{
			NotFound: func(err error) bool { return errors.Is(err, pods.ErrNotFound) },
			BadRequest: func(err error) bool {
				var b pods.BadRequestError
				return errors.As(err, &b) || errors.Is(err, volumes.ErrBadVolumeName)
			},
			Conflict: func(err error) bool { return errors.Is(err, volumes.ErrVolumeInUse) },
		},
		Registry: a.metrics.registry,
		Probes:   a.metrics.probes.Registry,
		Logger:   a.log,
	})
}

// startServiceNetwork runs the service proxy, DNS and network policy
// (agent/servicenet) unless turned off (then it returns nil).
func (a *Agent) startServiceNetwork(ctx context.Context, wg *sync.WaitGroup, fail func(error)) (*servicenet.Network, error) {
	if a.cfg.Network.DisableServiceNetwork {
		return nil, nil
	}
	netCfg, err := NetworkConfig(a.cfg)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	netCfg.Metrics = a.metrics.registry
	n, err := servicenet.New(a.client, netCfg, a.log.With("component", "network"))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	wg.Go(func() { fail(n.Run(ctx)) })
	return n, nil
}

// observeNode follows the node's object: its pod CIDR wires the pod
// network, and pods waiting for it are woken.
func (a *Agent) observeNode(obj any) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	a.node.Observe(n)
	if cidr := node.PodCIDRs(n); cidr != "" && cidr != a.network.PodCIDR() {
		if err := a.network.SetPodCIDR(cidr); err != nil {
			a.log.Error("configuring the pod network", "podCIDR", cidr, "err", err)
			return
		}
		a.log.Info("pod network configured", "podCIDR", cidr)
		a.pods.KickAll()
		go func() {
			if err := a.node.SyncStatus(context.Background()); err != nil {
				a.log.Warn("updating node status", "err", err)
			}
		}()
	}
}

// waitForAPI waits until the API server answers.
func (a *Agent) waitForAPI(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	return retry(ctx, a.log, "waiting for the API server", func(context.Context) error {
		_, err := a.client.Discovery().ServerVersion()
		return err
	})
}

// retry calls f until it succeeds or ctx ends, backing off to 10 s.
func retry(ctx context.Context, log interface{ Warn(string, ...any) }, what string, f func(context.Context) error) error {
	wait := 200 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("agent: %s: %w", what, err)
		}
		log.Warn(what, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: %s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}

// nodeRuntime adapts the runtime to what the node reports.
type nodeRuntime struct{ rt *runtime.Runtime }

func (n nodeRuntime) Version(ctx context.Context) (string, error) { return n.rt.Version(ctx) }

func (n nodeRuntime) Images(ctx context.Context) ([]node.Image, error) {
	imgs, err := n.rt.Images(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]node.Image, len(imgs))
	for i, img := range imgs {
		out[i] = node.Image{Names: append(img.Names, img.Ref), Size: img.Size}
	}
	return out, nil
}

// everything selects all objects of a lister.
var everything = labels.Everything()

// stripManagedFields keeps informer caches small: the agent never reads
// managed fields.
func stripManagedFields(obj any) (any, error) {
	if a, ok := obj.(metav1.Object); ok {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// podSecurity is what the pods manager enforces of security contexts, from
// the kubelet settings.
func (a *Agent) podSecurity() (pods.Security, error) {
	root := a.cfg.Kubelet.SeccompProfileRoot
	if root == "" {
		root = filepath.Join(a.dir, "seccomp")
		if err := os.MkdirAll(root, 0o700); err != nil {
			return pods.Security{}, fmt.Errorf("agent: seccomp profile root: %w", err)
		}
	}
	sysctls, err := pods.NewSysctlAllowlist(a.cfg.Kubelet.AllowedUnsafeSysctls)
	if err != nil {
		return pods.Security{}, fmt.Errorf("agent: %w", err)
	}
	s := pods.Security{SeccompProfileRoot: root, SeccompDefault: a.cfg.Kubelet.SeccompDefault, AppArmor: pods.AppArmorEnabled(), Sysctls: sysctls}
	if !s.AppArmor {
		a.log.Info("AppArmor is not enabled on this host: pods asking for an AppArmor profile are refused")
	}
	return s, nil
}
