// Package ingress is the built-in Ingress controller, one plugin with two
// parts. The leader part keeps the IngressClass "keelson" (marked default
// when it creates it), a LoadBalancer Service kube-system/keelson-ingress
// whose endpoints are the nodes running the data plane (so the cloud
// provider gives it an address), the TLS bundle Secret the data plane reads
// and the status of every Ingress of the class. The node part, which every
// agent runs, is the data plane: an HTTP(S) reverse proxy on ports 80 and
// 443 of the node that routes by the Ingresses' hosts and paths to ready
// endpoints.
//
// Parts, from pure to effectful: class.go (which Ingresses are ours),
// match.go and table.go (the routing table, built from objects and
// immutable), bundle.go (TLS material the leader publishes), proxy.go and
// tls.go (serving one table, swapped atomically), leader.go and node.go
// (the informers and loops around them).
package ingress

import (
	"fmt"
	"net/netip"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "ingress"

const version = "0.1.0"

// The names the plugin owns.
const (
	// ClassName is the IngressClass the plugin creates and serves.
	ClassName = "keelson"
	// ControllerName is spec.controller of the classes it serves.
	ControllerName = "keelson.io/ingress"
	// Namespace holds the Service and the TLS bundle.
	Namespace = "kube-system"
	// ServiceName is the LoadBalancer Service (and its EndpointSlice)
	// through which the Ingresses get an address.
	ServiceName = "keelson-ingress"
	// BundleName is the Secret holding the TLS certificates and keys that
	// Ingresses of the class reference: the only Secret nodes may read.
	BundleName = "keelson-ingress-tls"

	annotationDefaultClass = "ingressclass.kubernetes.io/is-default-class"
	annotationClass        = "kubernetes.io/ingress.class"
)

// Config is the plugin's section of the server configuration; the leader
// and node parts read the same section.
type Config struct {
	// HTTPPort is the node port the data plane serves plain HTTP on
	// (default 80).
	HTTPPort int `json:"httpPort"`
	// HTTPSPort is the node port it serves TLS on (default 443).
	HTTPSPort int `json:"httpsPort"`
	// BindAddress is the node address the data plane listens on; default
	// all addresses.
	BindAddress string `json:"bindAddress"`
	// HTTPSRedirect answers plain HTTP requests for a host that has TLS
	// with a 308 redirect to https (default false).
	HTTPSRedirect bool `json:"httpsRedirect"`
	// GOGC is the data plane's garbage collection target in percent of its
	// live heap (default 400; Go's default is 100), applied while the heap
	// it allows stays under HeapLimit; past that the target falls toward
	// 100. A GOGC or GOMEMLIMIT from plugins.runtime.ingress wins over both.
	GOGC int `json:"gogc"`
	// HeapLimit is the heap size, a quantity such as 128Mi, up to which
	// the data plane collects at GOGC (default 128Mi).
	HeapLimit string `json:"heapLimit"`
	// NodeSelector restricts the data plane to Nodes with these labels; the
	// server sets it from plugins.nodeSelector.ingress.
	NodeSelector map[string]string `json:"nodeSelector"`
}

// DefaultConfig is the configuration with every default.
func DefaultConfig() Config {
	return Config{HTTPPort: 80, HTTPSPort: 443, GOGC: defaultDataPlaneGOGC, HeapLimit: defaultHeapLimit}
}

// decodeConfig reads and validates the plugin's section.
func decodeConfig(raw []byte) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return cfg, err
	}
	for key, p := range map[string]int{"httpPort": cfg.HTTPPort, "httpsPort": cfg.HTTPSPort} {
		if p < 1 || p > 65535 {
			return cfg, sdk.ConfigErrorf(key, "%s is %d: set a TCP port between 1 and 65535", key, p)
		}
	}
	if cfg.HTTPPort == cfg.HTTPSPort {
		return cfg, sdk.ConfigErrorf("httpsPort", "httpsPort equals httpPort (%d): give TLS its own port", cfg.HTTPPort)
	}
	if a := cfg.BindAddress; a != "" {
		if _, err := netip.ParseAddr(a); err != nil {
			return cfg, sdk.ConfigErrorf("bindAddress", "bindAddress %q is not an IP address: %v", a, err)
		}
	}
	if _, err := validateGC(cfg); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// Plugin returns the ingress plugin: its leader part (Run) and its data
// plane (RunNode).
func Plugin() sdk.Plugin {
	return sdk.Plugin{Name: Name, Kind: sdk.KindIngress, Version: version, ManualReady: true,
		Run: runLeader, RunNode: runNode, Rules: leaderRules()}
}

func leaderRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	write := []string{"get", "list", "watch", "create", "update"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: read},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingressclasses"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: write},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch", "create", "update", "delete"}},
		{APIGroups: []string{gatewayGroup}, Resources: []string{"gatewayclasses"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{gatewayGroup}, Resources: []string{"gateways", "httproutes", "referencegrants"}, Verbs: read},
		{APIGroups: []string{gatewayGroup}, Resources: []string{"gatewayclasses/status", "gateways/status", "httproutes/status"}, Verbs: []string{"update", "patch"}},
		sdk.EventRule,
	}
}

// NodeRules are the permissions the data plane needs beyond what every
// node already reads (Services, EndpointSlices): Ingresses and their
// classes, and the one TLS bundle Secret the leader part publishes. A node
// never reads any other Secret: a worker's credentials reach only the
// certificates its data plane must serve.
func NodeRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses", "ingressclasses"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{BundleName}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: read},
		{APIGroups: []string{gatewayGroup}, Resources: []string{"gatewayclasses", "gateways", "httproutes", "referencegrants"}, Verbs: read},
	}
}

// gatewayGroup is the Gateway API's API group.
const gatewayGroup = "gateway.networking.k8s.io"

func portString(p int) string { return fmt.Sprint(p) }
