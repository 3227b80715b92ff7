// Package nodehost runs node plugins on a node agent: it reads the node
// plugin declarations the raft leader publishes (host.NodePlugin, in a
// ConfigMap only those may read), starts the ones whose node selector
// matches this Node with the plugin host's supervisor (same protocol,
// checksum pinning, supervision and backoff as the leader's plugins) under
// the node's own identity, and publishes each plugin's state on this node
// as the Plugin object PLUGIN.NODE.
package nodehost

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
)

// Config is what a node's host needs.
type Config struct {
	NodeName  string
	PluginDir string
	// Builtins serves the built-in node plugins (host.ResolveBuiltinBinary).
	Builtins host.BuiltinBinary
	// APIEndpoint and CAPEM are handed to the plugins.
	APIEndpoint string
	CAPEM       []byte
	// NodeCredentials returns the node's current client certificate and
	// key, which the plugins act with.
	NodeCredentials func() (certPEM, keyPEM []byte, err error)
	// Members is served to the plugins (the node's gossip view); optional.
	Members proto.MembersServer
	// Kube and Dyn act as the node: they read the declarations and the
	// Node and write the Plugin status objects.
	Kube   kubernetes.Interface
	Dyn    dynamic.Interface
	Logger *slog.Logger
	// SocketDir is host.Config.SocketDir (host.PrepareSocketDir).
	SocketDir string
	// Metrics, when set, gets a collector that relays the running node
	// plugins' metrics (host.NewMetricsCollector: keelson_plugin_*,
	// labelled with the plugin) at each scrape: the agent's /metrics. Once
	// Run returns it reports nothing (a registry cannot unregister an
	// unchecked collector).
	Metrics prometheus.Registerer
}

// Run runs the selected node plugins until ctx ends, restarting the set
// whenever the declarations or the Node's labels change what it should be.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kick := make(chan struct{}, 1)
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	cms, err := watchOne(ctx, cfg.Kube.CoreV1().RESTClient(), "configmaps", host.NodePluginsNamespace, host.NodePluginsConfigMap, &v1.ConfigMap{}, poke)
	if err != nil {
		return err
	}
	nodes, err := watchOne(ctx, cfg.Kube.CoreV1().RESTClient(), "nodes", "", cfg.NodeName, &v1.Node{}, poke)
	if err != nil {
		return err
	}
	w := newStatusWriter(cfg.Dyn, cfg.NodeName, cfg.Logger)
	go w.run(ctx)
	r := &runner{cfg: cfg, status: w}
	defer r.stop()
	if cfg.Metrics != nil {
		c := host.NewMetricsCollector(r.metrics, cfg.Logger)
		if err := cfg.Metrics.Register(c); err != nil {
			return fmt.Errorf("node plugins: registering their metrics: %w", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
		}
		r.apply(ctx, r.desired(cms, nodes))
	}
}

// watchOne runs an informer on the single object ns/name and calls onChange
// after every event.
func watchOne(ctx context.Context, c cache.Getter, resource, ns, name string, obj runtime.Object, onChange func()) (cache.Store, error) {
	lw := cache.NewListWatchFromClient(c, resource, ns, fields.OneTermEqualSelector("metadata.name", name))
	inf := cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { onChange() },
		UpdateFunc: func(any, any) { onChange() },
		DeleteFunc: func(any) { onChange() },
	})
	if err != nil {
		return nil, err
	}
	go inf.Run(ctx.Done())
	return inf.GetStore(), nil
}
