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
	// LeafLifetime is how long an issued leaf certificate is valid by default.
	// Leaves are reissued once two thirds of it have passed: at start, and
	// on a running server by Renew.
	LeafLifetime = 365 * 24 * time.Hour
	// CAExpiryWarning is how long before a CA expires that it is reported:
	// a CA is never replaced automatically.
	CAExpiryWarning = 30 * 24 * time.Hour
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
	// LeafLifetime is how long the leaf certificates issued here are valid;
	// default LeafLifetime. Tests shorten it to watch renewals happen.
	LeafLifetime time.Duration
	// CALifetime is how long a CA created here is valid; default CALifetime.
	// Tests shorten it to see the expiry warnings.
	CALifetime time.Duration
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
	// EncryptionConfig is kube-apiserver's EncryptionConfiguration that
	// encrypts Secrets at rest (mode 0600); it is a cluster secret.
	EncryptionConfig string
	// CSRSigner is the CA the csrsigning plugin signs approved
	// CertificateSigningRequests with; derived from CA (see ensureCSRSigner).
	CSRSigner Pair
	// ClientCA is the API server's --client-ca-file: CA and CSRSigner.
	ClientCA string
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
	if o.LeafLifetime == 0 {
		o.LeafLifetime = LeafLifetime
	}
	if o.CALifetime == 0 {
		o.CALifetime = CALifetime
	}
	if o.LeafLifetime < 0 || o.CALifetime < 0 {
		return o, fmt.Errorf("pki: certificate lifetimes (leaf %s, CA %s) must be positive", o.LeafLifetime, o.CALifetime)
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
		EncryptionConfig:        join(dir, "encryption-config.yaml"),
		CSRSigner:               p("csr-signer-ca"),
		ClientCA:                join(dir, "client-ca.crt"),
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
	ca, fpCA, err := b.ensureCAs(opts, true)
	if err != nil {
		return nil, err
	}
	for _, a := range []*authority{ca, fpCA} {
		if needsRenewal(a.cert, opts.Now()) {
			opts.Logger.Warn("CA is past two thirds of its lifetime; plan a CA rotation, it is never replaced automatically",
				"file", a.file, "notAfter", a.cert.NotAfter)
		}
	}
	if err := ensureEncryptionConfig(b.EncryptionConfig, ca, opts); err != nil {
		return nil, err
	}
	if err := b.ensureCSRSigner(ca, opts); err != nil {
		return nil, err
	}
	if _, err := b.ensureLeaves(ca, fpCA, opts); err != nil {
		return nil, err
	}
	if err := ensureServiceAccountKey(b.ServiceAccountKey, b.ServiceAccountPublicKey, opts); err != nil {
		return nil, err
	}
	return b, nil
}

// Renew reissues, from the existing CAs, the leaf certificates that are past
// two thirds of their lifetime or lack a name opts now asks for, and returns
// the certificate files it rewrote. Unlike Ensure it never creates a CA.
// Consumers pick the new files up without a restart: kube-apiserver watches
// its serving and client files, and PeerTLS reloads on change.
func (b *Bundle) Renew(opts Options) ([]string, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ca, fpCA, err := b.ensureCAs(opts, false)
	if err != nil {
		return nil, err
	}
	return b.ensureLeaves(ca, fpCA, opts)
}

// ensureCAs loads (or, with create, makes) the cluster and front-proxy CAs.
func (b *Bundle) ensureCAs(opts Options, create bool) (ca, fpCA *authority, err error) {
	if ca, err = ensureCA(b.CA, "keelson-ca", create, opts); err != nil {
		return nil, nil, err
	}
	if fpCA, err = ensureCA(b.FrontProxyCA, "keelson-front-proxy-ca", create, opts); err != nil {
		return nil, nil, err
	}
	return ca, fpCA, nil
}

// ensureLeaves issues or reissues every leaf certificate of the bundle and
// records the serving names; it returns the certificate files it wrote.
func (b *Bundle) ensureLeaves(ca, fpCA *authority, opts Options) (renewed []string, err error) {
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
		cert, changed, err := ensureLeaf(l.pair, l.tmpl, l.ca, opts)
		if err != nil {
			return nil, err
		}
		if changed {
			renewed = append(renewed, l.pair.CertFile)
		}
		if l.pair == b.Serving {
			b.ServingDNSNames, b.ServingIPs = cert.DNSNames, cert.IPAddresses
		}
	}
	return renewed, nil
}

// needsRenewal reports whether cert has used up two thirds of its lifetime.
func needsRenewal(cert *x509.Certificate, now time.Time) bool {
	return now.After(renewalTime(cert))
}

// renewalTime is when two thirds of cert's lifetime have passed.
func renewalTime(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life * 2 / 3)
}

// backdate is how far before its issue a certificate of lifetime starts to
// be valid: clockSkew, or a tenth of a short lifetime, so that the backdated
// part never decides when the certificate is renewed.
func backdate(lifetime time.Duration) time.Duration {
	return min(clockSkew, lifetime/10)
}

// RenewCheckInterval is how often a running server checks whether its leaf
// certificates of lifetime are due: often enough that a renewal at two
// thirds of the lifetime is never late by more than a tenth of it.
func RenewCheckInterval(lifetime time.Duration) time.Duration {
	return max(time.Second, min(time.Minute, lifetime/10))
}
