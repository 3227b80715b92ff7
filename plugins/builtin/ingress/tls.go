package ingress

import (
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
)

// certSet chooses a certificate by SNI: an exact host, then a single-label
// wildcard, then a TLS section without hosts (the fallback).
type certSet struct {
	exact    map[string]*tls.Certificate
	wildcard map[string]*tls.Certificate
	fallback *tls.Certificate
}

func newCertSet() certSet {
	return certSet{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
}

// add registers cert for hosts unless an older Ingress already did.
func (c *certSet) add(hosts []string, cert *tls.Certificate) {
	if len(hosts) == 0 && c.fallback == nil {
		c.fallback = cert
	}
	for _, h := range hosts {
		h = strings.ToLower(h)
		m, key := c.exact, h
		if strings.HasPrefix(h, "*.") {
			m, key = c.wildcard, h[2:]
		}
		if _, ok := m[key]; !ok {
			m[key] = cert
		}
	}
}

// forHost is the certificate an Ingress's TLS section names for host, nil
// if none names the host.
func (c *certSet) forHost(host string) *tls.Certificate {
	if cert, ok := c.exact[host]; ok {
		return cert
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if cert, ok := c.wildcard[host[i+1:]]; ok {
			return cert
		}
	}
	return nil
}

// choose answers a TLS handshake.
func (c *certSet) choose(serverName string) (*tls.Certificate, error) {
	if cert := c.forHost(requestHost(serverName)); cert != nil {
		return cert, nil
	}
	if c.fallback != nil {
		return c.fallback, nil
	}
	return nil, fmt.Errorf("no Ingress TLS certificate for server name %q", serverName)
}

// certCache parses each distinct key pair once, across tables: tables are
// rebuilt on every endpoint change, certificates change rarely.
type certCache struct {
	mu     sync.Mutex
	parsed map[[32]byte]*tls.Certificate
}

// get parses (or returns the already parsed) pair; drop the pairs not
// asked for since the last prune with prune.
func (c *certCache) get(certPEM, keyPEM []byte, used map[[32]byte]bool) (*tls.Certificate, error) {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0})
	h.Write(keyPEM)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	used[sum] = true
	c.mu.Lock()
	defer c.mu.Unlock()
	if cert, ok := c.parsed[sum]; ok {
		return cert, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.parsed == nil {
		c.parsed = map[[32]byte]*tls.Certificate{}
	}
	c.parsed[sum] = &cert
	return &cert, nil
}

func (c *certCache) prune(used map[[32]byte]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.parsed {
		if !used[k] {
			delete(c.parsed, k)
		}
	}
}

// bundleKey is the key prefix of a Secret's pair in the TLS bundle:
// namespace and name joined by '_', which neither may contain.
func bundleKey(namespace, name string) string { return namespace + "_" + name }

// bundleCert returns the pair of namespace/name from the bundle's data.
func bundleCert(bundle map[string][]byte, namespace, name string) (certPEM, keyPEM []byte, err error) {
	k := bundleKey(namespace, name)
	certPEM, keyPEM = bundle[k+"."+v1.TLSCertKey], bundle[k+"."+v1.TLSPrivateKeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, nil, fmt.Errorf("not published in %s/%s: it must exist in the Ingress's namespace with type %s and keys %s and %s",
			Namespace, BundleName, v1.SecretTypeTLS, v1.TLSCertKey, v1.TLSPrivateKeyKey)
	}
	return certPEM, keyPEM, nil
}
