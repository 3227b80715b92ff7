package apiserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/core/pki"
)

// Defaults for Config fields left empty.
const (
	DefaultSecurePort    = 6443
	DefaultServiceCIDR   = "10.43.0.0/16"
	DefaultNodePortRange = "30000-32767"
	DefaultClusterDomain = "cluster.local"
	DefaultBindAddress   = "0.0.0.0"
)

// Config says how to run the embedded kube-apiserver. Every field has a default
// except EtcdServers and Bundle.
type Config struct {
	// DataDir holds the API server's own generated files (under DataDir/apiserver).
	DataDir string
	// BindAddress is the address the HTTPS port listens on; default 0.0.0.0.
	BindAddress string
	// AdvertiseAddress is the address published in the kubernetes service
	// endpoints. Empty lets kube-apiserver pick the bind address or, when that is
	// unspecified, the address of the default-route interface. It must not be a
	// loopback address: Endpoints validation refuses those.
	AdvertiseAddress string
	// SecurePort is the HTTPS port; default 6443.
	SecurePort int
	// ServiceCIDR is the ClusterIP range, comma-separated for dual stack; default
	// 10.43.0.0/16. Its first address becomes the kubernetes service ClusterIP.
	ServiceCIDR string
	// NodePortRange is "first-last", inclusive; default 30000-32767.
	NodePortRange string
	// ClusterDomain is the service DNS suffix; it names the service-account
	// issuer https://kubernetes.default.svc.<ClusterDomain>. Default cluster.local.
	ClusterDomain string
	// EtcdServers are the etcd v3 endpoints (core/kvserver), e.g.
	// "unix:///var/lib/keelson/etcd.sock" or "http://127.0.0.1:2379". Required.
	EtcdServers []string
	// Bundle holds the certificates and keys from pki.Ensure. Required.
	Bundle *pki.Bundle
	// EncryptionConfig is the EncryptionConfiguration file that encrypts
	// resources (Secrets) at rest; kube-apiserver re-reads it when it
	// changes, so a key rotation needs no restart. Empty stores in clear.
	EncryptionConfig string
	// CertReloadInterval, when set, is how often the client certificates
	// kube-apiserver presents from files (to kubelets) are re-read; upstream
	// checks every 5 minutes, too rarely for a test's seconds-long
	// certificates. It is process-wide client-go state.
	CertReloadInterval time.Duration
	// Identity tells this API server from the cluster's others: upstream
	// derives its identity Lease (kube-system/apiserver-HASH) from the
	// hostname, so servers sharing a host (tests, benches, a cluster tried
	// on one machine) would share one Lease and fail each other's renewals.
	// The server passes its node name, which is unique in the cluster and
	// defaults to the hostname. Empty: the hostname. It is process-wide.
	Identity string
	// ExtraArgs are kube-apiserver flags (name without "--" to value) that are
	// added to, or replace, the ones derived from the fields above.
	ExtraArgs map[string]string
	// PodSecurity is the PodSecurity admission plugin's cluster default;
	// empty levels take DefaultPodSecurity's. ExtraArgs naming an
	// admission-control-config-file replace it.
	PodSecurity PodSecurity
	// CurrentTerm returns the raft term this server knows; the term fence
	// (see TermFenceName) refuses writes of plugins started in an older
	// term. Nil disables the fence (an API server without plugins).
	CurrentTerm func() uint64
	// Logger receives kube-apiserver's logs (klog is routed into it) and the
	// readiness report; default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.BindAddress == "" {
		c.BindAddress = DefaultBindAddress
	}
	if c.SecurePort == 0 {
		c.SecurePort = DefaultSecurePort
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := DefaultPodSecurity()
	if c.PodSecurity.Enforce == "" {
		c.PodSecurity.Enforce = def.Enforce
	}
	if c.PodSecurity.Warn == "" {
		c.PodSecurity.Warn = def.Warn
	}
	if c.PodSecurity.Audit == "" {
		c.PodSecurity.Audit = def.Audit
	}
	if c.PodSecurity.ExemptNamespaces == nil {
		c.PodSecurity.ExemptNamespaces = def.ExemptNamespaces
	}
	return c
}

// validate catches the mistakes kube-apiserver would report less clearly, or
// only after it has touched process-global state.
func (c Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if len(c.EtcdServers) == 0 {
		errs = append(errs, errors.New("EtcdServers is required (the kvserver endpoint, e.g. unix:///var/lib/keelson/etcd.sock)"))
	}
	if c.Bundle == nil {
		errs = append(errs, errors.New("the certificate bundle (Config.Bundle) is required: get it from pki.Ensure"))
	}
	if net.ParseIP(c.BindAddress) == nil {
		errs = append(errs, fmt.Errorf("BindAddress %q is not an IP address", c.BindAddress))
	}
	if c.AdvertiseAddress != "" {
		ip := net.ParseIP(c.AdvertiseAddress)
		if ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
			errs = append(errs, fmt.Errorf("AdvertiseAddress %q must be a routable IP address", c.AdvertiseAddress))
		}
	}
	if c.SecurePort < 1 || c.SecurePort > 65535 {
		errs = append(errs, fmt.Errorf("SecurePort %d is not a TCP port", c.SecurePort))
	}
	for _, cidr := range strings.Split(c.ServiceCIDR, ",") {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(cidr)); err != nil {
			errs = append(errs, fmt.Errorf("ServiceCIDR %q: %w", c.ServiceCIDR, err))
		}
	}
	if err := validatePortRange(c.NodePortRange); err != nil {
		errs = append(errs, fmt.Errorf("NodePortRange: %w", err))
	}
	if err := c.PodSecurity.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("apiserver: invalid config: %w", err)
	}
	return nil
}

func validatePortRange(r string) error {
	lo, hi, ok := strings.Cut(r, "-")
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil || first < 1 || last > 65535 || first > last {
		return fmt.Errorf("%q is not a range like 30000-32767", r)
	}
	return nil
}

// Args returns the kube-apiserver command line Run would use for c, with
// defaults applied: benchmarks start an upstream kube-apiserver with exactly
// the flags keelson embeds it with.
func (c Config) Args() []string { return c.withDefaults().args() }

// Issuer is the service-account token issuer URL for a cluster domain.
func Issuer(clusterDomain string) string {
	return "https://kubernetes.default.svc." + clusterDomain
}

// Args returns the kube-apiserver command line for c, sorted by flag name so
// that it is stable across runs and readable in logs. c must have defaults applied.
func (c Config) args() []string {
	b := c.Bundle
	issuer := Issuer(c.ClusterDomain)
	flags := map[string]string{
		"bind-address":                     c.BindAddress,
		"secure-port":                      strconv.Itoa(c.SecurePort),
		"cert-dir":                         filepath.Join(c.DataDir, "apiserver"),
		"tls-cert-file":                    b.Serving.CertFile,
		"tls-private-key-file":             b.Serving.KeyFile,
		"client-ca-file":                   b.ClientCA,
		"service-cluster-ip-range":         c.ServiceCIDR,
		"service-node-port-range":          c.NodePortRange,
		"etcd-servers":                     strings.Join(c.EtcdServers, ","),
		"storage-backend":                  "etcd3",
		"authorization-mode":               "Node,RBAC",
		"anonymous-auth":                   "false",
		"enable-admission-plugins":         "NodeRestriction",
		"allow-privileged":                 "true",
		"service-account-issuer":           issuer,
		"api-audiences":                    issuer,
		"service-account-key-file":         b.ServiceAccountPublicKey,
		"service-account-signing-key-file": b.ServiceAccountKey,
		"kubelet-client-certificate":       b.KubeletClient.CertFile,
		"kubelet-client-key":               b.KubeletClient.KeyFile,
		// Node agents serve the kubelet API with certificates of the
		// cluster CA (issued on join); verify them, and dial nodes by the
		// InternalIP they register rather than a host name DNS may not know.
		"kubelet-certificate-authority":      b.CA.CertFile,
		"kubelet-preferred-address-types":    "InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
		"requestheader-client-ca-file":       b.FrontProxyCA.CertFile,
		"requestheader-allowed-names":        pki.FrontProxyClientUser,
		"requestheader-username-headers":     "X-Remote-User",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-uid-headers":          "X-Remote-Uid",
		"proxy-client-cert-file":             b.FrontProxyClient.CertFile,
		"proxy-client-key-file":              b.FrontProxyClient.KeyFile,
		// Aggregated APIs (the metricsserver plugin's metrics.k8s.io) are
		// dialed at their endpoint, so a server without a service proxy
		// (--disable-agent) reaches them.
		"enable-aggregator-routing": "true",
		"profiling":                 "false",
		// Nodes join with the cluster token through the supervisor, and
		// nothing in Keelson issues, signs or cleans bootstrap tokens (upstream
		// kube-controller-manager leaves bootstrapsigner and tokencleaner off
		// by default too), so the authenticator stays off: no half feature.
		"enable-bootstrap-token-auth": "false",
		// On SIGTERM, answer requests that arrive on open connections with
		// 429 and Retry-After (clients go to another server), and give the
		// HTTP server 2 s, not the request timeout (60 s), to close. Without
		// it, open watches (every agent keeps some) held a stopping server
		// until core/server's 30 s limit: each server of a rolling upgrade
		// took 35 s to stop.
		"shutdown-send-retry-after": "true",
	}
	if c.AdvertiseAddress != "" {
		flags["advertise-address"] = c.AdvertiseAddress
	}
	if c.ownsAdmissionConfig() {
		flags["admission-control-config-file"] = admissionConfigPath(c.DataDir)
	}
	if c.EncryptionConfig != "" {
		flags["encryption-provider-config"] = c.EncryptionConfig
		flags["encryption-provider-config-automatic-reload"] = "true"
	}
	for k, v := range c.ExtraArgs {
		flags[strings.TrimLeft(k, "-")] = v
	}
	names := make([]string, 0, len(flags))
	for k := range flags {
		names = append(names, k)
	}
	slices.Sort(names)
	args := make([]string, 0, len(names))
	for _, k := range names {
		args = append(args, "--"+k+"="+flags[k])
	}
	return args
}
