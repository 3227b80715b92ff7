// Package pki holds the cluster's certificate authority and the certificates and keys
// the API server needs, creating them on first start and loading them afterwards.
//
// Nothing here is ever regenerated silently: the CA is only ever created into an
// empty directory, and a half-present or unreadable file is an error that names the
// file and what to do. Only leaf certificates are reissued automatically, and only
// from the existing CA, when they pass two thirds of their lifetime or when the
// serving certificate lacks a name the server is now reachable by; both are logged.
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"
)

const (
	// CALifetime is how long a new CA (cluster or front-proxy) is valid.
	CALifetime = 10 * 365 * 24 * time.Hour
	// LeafLifetime is how long an issued leaf certificate is valid. Leaves are
	// reissued at start once two thirds of it have passed.
	LeafLifetime = 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a peer whose clock is slightly behind
	// accepts a certificate issued a moment ago.
	clockSkew = 5 * time.Minute
)

// Well-known identities carried by the issued client certificates.
const (
	// AdminUser is the CN of the admin client certificate.
	AdminUser = "keelson-admin"
	// MastersGroup grants cluster-admin through the bootstrap RBAC policy.
	MastersGroup = "system:masters"
	// KubeletClientUser is the CN the API server presents to kubelets.
	KubeletClientUser = "kube-apiserver-kubelet-client"
	// FrontProxyClientUser is the CN the aggregator presents to extension API
	// servers; it must be in --requestheader-allowed-names.
	FrontProxyClientUser = "front-proxy-client"
	// PeerPrefix starts the CN of every server's peer certificate; peers
	// refuse any other client certificate of the cluster CA.
	PeerPrefix = "keelson-server:"
)

// Options says which names and addresses the serving certificate must cover.
// The zero value is usable: it yields the built-in names plus the hostname.
type Options struct {
	// ClusterDomain is the DNS suffix of services; default "cluster.local".
	ClusterDomain string
	// ServiceCIDR is the service IP range (comma-separated for dual stack); the first
	// address of each range is the kubernetes service ClusterIP and goes into the
	// serving certificate. Empty means none.
	ServiceCIDR string
	// IPs are extra addresses the API server is reached at (bind, advertise,
	// load balancer). Unspecified addresses (0.0.0.0, ::) are ignored.
	IPs []net.IP
	// DNSNames are extra names the API server is reached at.
	DNSNames []string
	// Hostname is added to the serving certificate; default os.Hostname().
	Hostname string
	// NodeName names this server in its peer certificate; default Hostname.
	NodeName string
	// Now is the clock; default time.Now. Tests inject a fixed clock.
	Now func() time.Time
	// Logger receives reissue and permission-repair events; default slog.Default().
	Logger *slog.Logger
}

// Pair names a certificate file and its private key file.
type Pair struct {
	CertFile string
	KeyFile  string
}

// Bundle is the set of files Ensure guarantees to exist and be valid. Paths are
// absolute when dir was.
type Bundle struct {
	Dir string
	// CA signs every leaf below except the front-proxy client; its certificate is
	// the --client-ca-file and what clients trust for serving.
	CA Pair
	// Serving is the API server's HTTPS certificate.
	Serving Pair
	// Admin is a system:masters client certificate for the admin kubeconfig.
	Admin Pair
	// KubeletClient is what the API server presents to kubelets (logs, exec).
	KubeletClient Pair
	// FrontProxyCA signs FrontProxyClient; it is the --requestheader-client-ca-file.
	FrontProxyCA Pair
	// FrontProxyClient is what the aggregator presents to extension API servers.
	FrontProxyClient Pair
	// ServiceAccountKey signs service-account tokens (PEM private key) and
	// ServiceAccountPublicKey verifies them (PEM PKIX public key).
	ServiceAccountKey       string
	ServiceAccountPublicKey string
	// Peer is this server's identity towards other servers (raft, internal
	// RPC, the supervisor endpoint): CN "keelson-server:<node name>", usable
	// for both ends of mutual TLS.
	Peer Pair
	// ServingNames are the DNS names and IPs in the serving certificate.
	ServingDNSNames []string
	ServingIPs      []net.IP
}

// ErrCorrupt marks a file that exists but cannot be used as it is.
var ErrCorrupt = errors.New("pki file unusable")

func (o Options) withDefaults() (Options, error) {
	if o.ClusterDomain == "" {
		o.ClusterDomain = "cluster.local"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return o, fmt.Errorf("pki: hostname for serving certificate: %w", err)
		}
		o.Hostname = h
	}
	if o.NodeName == "" {
		o.NodeName = o.Hostname
	}
	return o, nil
}

func newBundle(dir string) *Bundle {
	p := func(name string) Pair {
		return Pair{CertFile: join(dir, name+".crt"), KeyFile: join(dir, name+".key")}
	}
	return &Bundle{
		Dir:                     dir,
		CA:                      p("ca"),
		Serving:                 p("apiserver"),
		Admin:                   p("admin"),
		KubeletClient:           p("apiserver-kubelet-client"),
		FrontProxyCA:            p("front-proxy-ca"),
		FrontProxyClient:        p("front-proxy-client"),
		Peer:                    p("peer"),
		ServiceAccountKey:       join(dir, "sa.key"),
		ServiceAccountPublicKey: join(dir, "sa.pub"),
	}
}

// Ensure creates the PKI in dir on first use and loads and checks it afterwards.
// See the package comment for what it will and will not regenerate.
func Ensure(dir string, opts Options) (*Bundle, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create directory %s: %w", dir, err)
	}
	b := newBundle(dir)
	ca, err := ensureCA(b.CA, "keelson-ca", opts)
	if err != nil {
		return nil, err
	}
	fpCA, err := ensureCA(b.FrontProxyCA, "keelson-front-proxy-ca", opts)
	if err != nil {
		return nil, err
	}
	dnsNames, ips, err := servingNames(opts)
	if err != nil {
		return nil, err
	}
	leaves := []struct {
		pair Pair
		tmpl leafTemplate
		ca   *authority
	}{
		{b.Serving, leafTemplate{cn: "kube-apiserver", server: true, dns: dnsNames, ips: ips}, ca},
		{b.Admin, leafTemplate{cn: AdminUser, orgs: []string{MastersGroup}}, ca},
		{b.KubeletClient, leafTemplate{cn: KubeletClientUser, orgs: []string{MastersGroup}}, ca},
		{b.FrontProxyClient, leafTemplate{cn: FrontProxyClientUser}, fpCA},
		{b.Peer, leafTemplate{cn: PeerPrefix + opts.NodeName, server: true, peer: true, dns: []string{opts.NodeName}, ips: ips}, ca},
	}
	for _, l := range leaves {
		cert, err := ensureLeaf(l.pair, l.tmpl, l.ca, opts)
		if err != nil {
			return nil, err
		}
		if l.pair == b.Serving {
			b.ServingDNSNames, b.ServingIPs = cert.DNSNames, cert.IPAddresses
		}
	}
	if err := ensureServiceAccountKey(b.ServiceAccountKey, b.ServiceAccountPublicKey, opts); err != nil {
		return nil, err
	}
	return b, nil
}

// needsRenewal reports whether cert has used up two thirds of its lifetime.
func needsRenewal(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return now.After(cert.NotBefore.Add(life * 2 / 3))
}
