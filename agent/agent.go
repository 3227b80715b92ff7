// Package agent assembles a Keelson node agent, the kubelet of a node: it
// obtains node credentials with the cluster token, reaches every server
// through a failover proxy, runs containerd, registers the Node and keeps its
// Lease, runs the pods bound to the node and serves the kubelet API.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/apiproxy"
	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/credentials"
	"github.com/keelson/keelson/agent/gossip"
	"github.com/keelson/keelson/agent/images"
	"github.com/keelson/keelson/agent/node"
	"github.com/keelson/keelson/agent/pods"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/volumes"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/dirlock"
	"github.com/keelson/keelson/internal/join"
	"github.com/keelson/keelson/internal/statefile"
	"github.com/keelson/keelson/plugins/proto"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options are what the configuration file does not say.
type Options struct {
	// Embedded: the agent runs inside a server, which is already the
	// node's member of the gossip pool.
	Embedded bool
	// RegisterTaints are set on the Node when the agent creates it
	// (kubelet's --register-with-taints): a server's node carries the
	// control-plane taint. A node may not change its own taints later.
	RegisterTaints []v1.Taint
	// KubeletVersion is reported in the Node's info.
	KubeletVersion string
	Logger         *slog.Logger
	// Ready, when set, is called once the agent serves its pods.
	Ready func()
	// NodePlugins, when set, runs the node plugin host (plugins/host/nodehost)
	// until ctx ends, once the agent serves its pods.
	NodePlugins func(ctx context.Context, env NodePluginEnv) error
	// Members, when set, is the gossip view node plugins get (a server's
	// embedded agent has no member of its own).
	Members proto.MembersServer
}

// Agent is a running node agent.
type Agent struct {
	cfg  config.Agent
	opts Options
	log  *slog.Logger
	dir  string
	tok  join.Token
	ip   net.IP

	creds   *credentials.Store
	proxy   *apiproxy.Proxy
	client  kubernetes.Interface
	rest    *rest.Config
	daemon  *runtime.Daemon
	rt      *runtime.Runtime
	network *cni.Network
	node    *node.Node
	pods    *pods.Manager
	volumes *volumes.Manager
	// gossipMu guards gossip, which watchAPI closes while no server
	// answers and opens again when one does.
	gossipMu sync.Mutex
	gossip   *gossip.Member
	metrics  *metrics
}

// storageDir holds this node's local-path volumes.
func (a *Agent) storageDir() string { return config.StorageDir(a.cfg.DataDir, a.cfg.StorageDir) }

// Run runs the agent until ctx ends; containers keep running after it.
func Run(ctx context.Context, cfg config.Agent, opts Options) error {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("agent: data dir (dataDir, --data-dir): %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = resolved
	}
	cfg.DataDir = dataDir
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger, dir: config.AgentDir(cfg.DataDir)}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	lock, err := dirlock.Acquire(a.dir, "--data-dir")
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer lock.Release()
	if err := a.recordHost(); err != nil {
		return err
	}
	// Traversable, not listable: volume directories inside are 0777 for
	// the pods' users.
	if err := os.MkdirAll(a.storageDir(), 0o711); err != nil {
		return fmt.Errorf("agent: storage dir (storageDir, --storage-dir): %w", err)
	}
	tok, err := join.ParseToken(cfg.Token)
	if err != nil {
		return err
	}
	a.tok = tok
	if a.ip, err = nodeIP(cfg); err != nil {
		return err
	}
	defer a.close()
	if err := a.connect(ctx); err != nil {
		return err
	}
	if err := a.startRuntime(ctx); err != nil {
		return err
	}
	return a.serve(ctx)
}

// uninitializedTaint marks a Node a cloud-provider plugin has yet to
// initialise (cloud-provider's api.TaintExternalCloudProvider): kubelet
// registers with it under --cloud-provider=external, and the cloud-node
// controller removes it.
var uninitializedTaint = v1.Taint{Key: "node.cloudprovider.kubernetes.io/uninitialized", Value: "true", Effect: v1.TaintEffectNoSchedule}

// registerTaints are the taints the Node is created with.
func (a *Agent) registerTaints() []v1.Taint {
	out := slices.Clone(a.opts.RegisterTaints)
	if a.cfg.CloudProvider == config.CloudProviderExternal {
		out = append(out, uninitializedTaint)
	}
	return out
}

// nodeIP is the configured node IP, else the local address this host uses
// to reach the server.
func nodeIP(cfg config.Agent) (net.IP, error) {
	if cfg.NodeIP != "" {
		return net.ParseIP(cfg.NodeIP), nil
	}
	u, err := url.Parse(cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("server (--server): %w", err)
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, fmt.Errorf("finding the node IP from the route to %s (set --node-ip): %w", u.Host, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP, nil
}

// knownServers is the file that remembers every server the agent learned
// of, so a restarted agent reaches one even if the --server one is gone.
func (a *Agent) knownServersFile() string { return filepath.Join(a.dir, "servers.json") }

// loadServers reads the known servers. A corrupt file is moved aside and the agent starts fresh: the list is a
// cache of what gossip teaches again, and --server still names a server.
func (a *Agent) loadServers() []join.Server {
	var s []join.Server
	if err := statefile.LoadJSON(a.knownServersFile(), &s, time.Now()); err != nil {
		a.log.Error("the known-servers file is unreadable: starting from --server alone until gossip lists the servers again", "file", a.knownServersFile(), "err", err)
		return nil
	}
	return s
}

func (a *Agent) saveServers(s []join.Server) {
	if err := statefile.WriteJSON(a.knownServersFile(), s, 0o600); err != nil {
		a.log.Warn("remembering the servers", "file", a.knownServersFile(), "err", err)
	}
}

// apiServers lists host:port of the known API servers, --server first.
func (a *Agent) apiServers() []string {
	u, _ := url.Parse(a.cfg.Server)
	out := []string{u.Host}
	for _, s := range a.loadServers() {
		if s.API != "" && !slices.Contains(out, s.API) {
			out = append(out, s.API)
		}
	}
	return out
}

// supervisors lists host:port of the known servers' supervisor ports.
func (a *Agent) supervisors() []string {
	var out []string
	for _, s := range a.apiServers() {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		sv := net.JoinHostPort(host, strconv.Itoa(a.cfg.SupervisorPort))
		if !slices.Contains(out, sv) {
			out = append(out, sv)
		}
	}
	return out
}

// connect obtains credentials and builds the API clients, through the
// failover proxy.
func (a *Agent) connect(ctx context.Context) error {
	// Only the node's name: a server signs no other name for an agent, and
	// kube-apiserver reaches the kubelet by its IP or its name (the Node's
	// InternalIP and Hostname addresses).
	dns := []string{a.cfg.NodeName}
	creds, err := credentials.Ensure(ctx, credentials.Options{
		Dir:             filepath.Join(a.dir, "pki"),
		NodeName:        a.cfg.NodeName,
		Token:           a.tok,
		TokenFile:       a.cfg.TokenFile,
		Supervisors:     a.supervisors,
		ServingIPs:      []net.IP{a.ip},
		RegisterTaints:  a.registerTaints(),
		ServingDNSNames: dns,
		Logger:          a.log,
		OnServers:       a.learnServers,
	})
	if err != nil {
		return fmt.Errorf("agent: node credentials: %w", err)
	}
	a.creds = creds
	if a.proxy, err = apiproxy.Listen(a.apiServers(), a.log); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.rest = &rest.Config{
		Host: a.proxy.URL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile:   creds.CAFile(),
			CertFile: creds.ClientCert(),
			KeyFile:  creds.ClientKey(),
			// Every server's certificate names 127.0.0.1, the proxy.
			ServerName: "127.0.0.1",
		},
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"},
		QPS:           50,
		Burst:         100,
		UserAgent:     "keelson-agent/" + a.cfg.NodeName,
	}
	if a.client, err = kubernetes.NewForConfig(a.rest); err != nil {
		return fmt.Errorf("agent: API client: %w", err)
	}
	return nil
}

// learnServers records the servers a supervisor or the gossip pool told of.
func (a *Agent) learnServers(s []join.Server) {
	if len(s) == 0 {
		return
	}
	known := a.loadServers()
	changed := false
	for _, n := range s {
		if !slices.Contains(known, n) {
			known = append(known, n)
			changed = true
		}
	}
	if changed {
		a.saveServers(known)
	}
	if a.proxy != nil {
		a.proxy.SetServers(a.apiServers())
	}
}

// startRuntime runs containerd (unless one is given), connects to it and
// imports the images directory.
func (a *Agent) startRuntime(ctx context.Context) error {
	socket := a.cfg.Runtime.Containerd
	if socket == "" {
		d, err := runtime.StartDaemon(ctx, runtime.DaemonOptions{Bin: a.cfg.Runtime.ContainerdBin, Dir: filepath.Join(a.dir, "containerd"), Logger: a.log})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.daemon = d
		socket = d.Socket()
	}
	rt, err := runtime.New(ctx, runtime.Options{
		Socket:      socket,
		Dir:         filepath.Join(a.dir, "runtime"),
		Snapshotter: a.cfg.Runtime.Snapshotter,
		Registries:  a.cfg.Registries,
		Logger:      a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.rt = rt
	a.network, err = cni.New(cni.Options{
		BinDir:     a.cfg.Network.CNIBinDir,
		Dir:        filepath.Join(a.dir, "cni"),
		Bridge:     a.cfg.Network.Bridge,
		MTU:        a.cfg.Network.MTU,
		Masquerade: podMasquerade(a.cfg),
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	imgs := images.NewDir(config.ImagesDir(a.cfg.DataDir), filepath.Join(a.dir, "imported-images.json"), rt, a.log)
	if err := imgs.Scan(ctx); err != nil {
		a.log.Warn("importing images", "err", err)
	}
	return nil
}

func (a *Agent) close() {
	// A stop is not a decommission: to the pool the node looks failed, as
	// a crashed one does, and rejoins when the agent starts again.
	a.closeGossip()
	if a.rt != nil {
		a.rt.Close()
	}
	if a.daemon != nil {
		a.daemon.Stop()
	}
}

// maxLogSize parses the validated container log size.
func maxLogSize(s string) int64 {
	q := resource.MustParse(s)
	return q.Value()
}

// metrics are the agent's Prometheus metrics.
type metrics struct {
	registry    *prometheus.Registry
	podStartup  prometheus.Histogram
	imagePulls  *prometheus.HistogramVec
	runningPods prometheus.GaugeFunc
	// probes are served at /metrics/probes, apart, as kubelet does.
	probes *pods.ProbeMetrics
}

func newMetrics(bound func() []*v1.Pod) *metrics {
	m := &metrics{registry: prometheus.NewRegistry(), probes: pods.NewProbeMetrics()}
	m.podStartup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keelson_agent_pod_start_duration_seconds",
		Help:    "Time from the agent first seeing a pod until all its containers run.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	m.runningPods = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "keelson_agent_pods",
		Help: "Pods bound to this node that the agent knows.",
	}, func() float64 { return float64(len(bound())) })
	// kubelet's name, buckets and size label (pkg/kubelet/metrics).
	m.imagePulls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubelet_image_pull_duration_seconds",
		Help:    "[ALPHA] Duration in seconds to pull an image.",
		Buckets: []float64{1, 5, 10, 20, 30, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600},
	}, []string{"image_size_in_bytes"})
	m.registry.MustRegister(m.podStartup, m.runningPods, m.imagePulls, newPodCounts(bound), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// imagePulled records a pull under kubelet's image size buckets.
func (m *metrics) imagePulled(size int64, took time.Duration) {
	m.imagePulls.WithLabelValues(imageSizeBucket(size)).Observe(took.Seconds())
}

// imageSizeBucket is kubelet's label for an image of size bytes.
func imageSizeBucket(size int64) string {
	const mb, gb = 1 << 20, 1 << 30
	buckets := []struct {
		above int64
		label string
	}{{100 * gb, "GT100GB"}, {60 * gb, "60GB-100GB"}, {40 * gb, "40GB-60GB"}, {30 * gb, "30GB-40GB"}, {20 * gb, "20GB-30GB"},
		{10 * gb, "10GB-20GB"}, {5 * gb, "5GB-10GB"}, {gb, "1GB-5GB"}, {500 * mb, "500MB-1GB"}, {100 * mb, "100MB-500MB"},
		{10 * mb, "10MB-100MB"}, {0, "0-10MB"}}
	if size <= 0 {
		return "N/A"
	}
	for _, b := range buckets {
		if size > b.above {
			return b.label
		}
	}
	return "N/A"
}

// errStopped ends serve when the agent's own containerd dies.
var errStopped = errors.New("agent: containerd exited")

// waitTimeout bounds how long the agent waits for the API at start.
const waitTimeout = 5 * time.Minute
