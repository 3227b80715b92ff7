// Package metricsserver is the built-in metrics server plugin: it serves
// the resource metrics API (metrics.k8s.io/v1beta1 NodeMetrics and
// PodMetrics) that `kubectl top` and the HorizontalPodAutoscaler read, as
// upstream's metrics-server does and with its defaults: every node's
// kubelet /metrics/resource is scraped every 15 s, and usage is the rate
// between a thing's two latest reads.
//
// Why a plugin registered as an aggregated APIService, and not an API the
// server serves natively from the agents' data:
//   - Footprint: one scraper and one in-memory store for the cluster, on
//     the raft leader only. Served natively, each of three servers would
//     scrape every node (three times the agents' work) or replicate the
//     points through raft (a write per node every 15 s, which Keelson's
//     gossip heartbeats exist to avoid). The plugin's cache is the nodes
//     (addresses, labels) and the metadata of unfinished pods (names and
//     labels, for selectors), and two points per container.
//   - Reliability: the plugin follows the leader like every controller. On
//     a leader change the new leader's plugin publishes its own address in
//     the Service's EndpointSlice and its CA in the APIService, and has
//     usage after one scrape for containers started since, after two
//     (15 s) for the rest; nothing is lost that metrics-server would keep
//     (it keeps no history either). A crashed plugin is restarted by the
//     host and takes no other controller or the API server with it; while
//     it is down kube-apiserver answers the group with 503, as it does for
//     an unavailable metrics-server.
//   - Compatibility: the APIService, Service and RBAC are metrics-server's,
//     so kube-apiserver's aggregator, discovery, `kubectl top` and the HPA
//     work unchanged. kube-apiserver runs with aggregator routing, so it
//     dials the endpoint directly and a server without a service proxy
//     reaches the plugin.
//
// Parts, from pure to effectful: store (two reads per node and container,
// rates), parse (the kubelet text format), handlers and api (the HTTP API,
// front-proxy authentication, SubjectAccessReview authorization), scrape
// (the agents), register (Service, EndpointSlice, APIService, the
// system:aggregated-metrics-reader ClusterRole).
package metricsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin metricsserver`).
const Name = "metricsserver"

const pluginVersion = "0.1.0"

// DefaultPort is where the plugin serves the metrics API on the leader.
const DefaultPort = 6446

var errNotFound = errors.New("not found")

// Config is the plugin's configuration section.
type Config struct {
	// MetricResolution is how often every node is scraped (default 15s,
	// metrics-server's --metric-resolution).
	MetricResolution metav1.Duration `json:"metricResolution"`
	// BindAddress is the IP the API listens on (the server's
	// bindAddress by default).
	BindAddress string `json:"bindAddress"`
	// AdvertiseAddress is the IP kube-apiserver dials, published in the
	// metrics-server EndpointSlice (the server's advertise address by
	// default).
	AdvertiseAddress string `json:"advertiseAddress"`
	// Port is the API's port (default 6446).
	Port int `json:"port"`
}

func (c *Config) validate() error {
	if d := c.MetricResolution.Duration; d < time.Second || d > 10*time.Minute {
		return sdk.ConfigErrorf("metricResolution", "metricResolution is %s: set it between 1s and 10m (metrics-server's default is 15s)", d)
	}
	if net.ParseIP(c.BindAddress) == nil {
		return sdk.ConfigErrorf("bindAddress", "bindAddress %q is not an IP address: set the address to listen on, such as 0.0.0.0", c.BindAddress)
	}
	if ip := net.ParseIP(c.AdvertiseAddress); ip == nil || ip.IsUnspecified() {
		return sdk.ConfigErrorf("advertiseAddress", "advertiseAddress %q is not a specific IP address: set the address kube-apiserver reaches this server by", c.AdvertiseAddress)
	}
	if c.Port < 1 || c.Port > 65535 {
		return sdk.ConfigErrorf("port", "port is %d: set a TCP port between 1 and 65535", c.Port)
	}
	return nil
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, pluginVersion, setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		// The agents' /metrics/resource.
		{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{authConfigMapName}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "create", "update", "delete"}},
		{APIGroups: []string{"apiregistration.k8s.io"}, Resources: []string{"apiservices"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"get", "create", "update"}},
		// What the reader ClusterRole grants (RBAC lets a role be written
		// only by who holds its permissions).
		{APIGroups: []string{group}, Resources: []string{"pods", "nodes"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
	}
	return p
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{MetricResolution: metav1.Duration{Duration: 15 * time.Second}, BindAddress: "0.0.0.0", Port: DefaultPort}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	clock := clockwork.NewRealClock()
	reader, err := newKubeletReader(env.RESTConfig, clock)
	if err != nil {
		return nil, err
	}
	pods, err := newPodCache(env.RESTConfig)
	if err != nil {
		return nil, err
	}
	nodes := f.Core().V1().Nodes()
	if _, err := nodes.Informer().AddEventHandler(noHandler{}); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	s := &server{cfg: cfg, env: env, client: client, clock: clock, store: newStore(cfg.MetricResolution.Duration), pods: pods}
	s.scraper = &scraper{nodes: nodes.Lister(), reader: reader, store: s.store, resolution: cfg.MetricResolution.Duration,
		timeout: scrapeTimeout(cfg.MetricResolution.Duration), clock: clock, logger: env.Logger}
	s.source = &listerSource{nodes: nodes.Lister(), pods: pods.GetIndexer(), store: s.store, clock: clock}
	return s.run, nil
}

// scrapeTimeout bounds a round of scrapes: within the resolution, so
// rounds never overlap.
func scrapeTimeout(resolution time.Duration) time.Duration {
	return min(resolution*9/10, 10*time.Second)
}

// transform keeps of a node what the plugin reads: name, labels,
// addresses and kubelet port.
func transform(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	return &v1.Node{
		ObjectMeta: metaOf(n),
		Status:     v1.NodeStatus{Addresses: n.Status.Addresses, DaemonEndpoints: n.Status.DaemonEndpoints},
	}, nil
}
