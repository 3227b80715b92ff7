package pki

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// CertReloader hands a certificate and key from disk to TLS handshakes and
// re-reads them when either file changes, so a renewed certificate is served
// (and presented as a client certificate) by the next handshake, without a
// restart. Connections already open keep the certificate they started with.
type CertReloader struct {
	pair  Pair
	chain []string // CA certificate files appended to the served chain

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]fileStamp
}

// fileStamp identifies a version of a file: a rename-into-place (how every
// file here is written) changes at least the modification time or size.
type fileStamp struct {
	mod  time.Time
	size int64
}

// NewCertReloader loads pair (plus the certificates in chainFiles, sent after
// the leaf) and fails if it is unusable now.
func NewCertReloader(pair Pair, chainFiles ...string) (*CertReloader, error) {
	r := &CertReloader{pair: pair, chain: chainFiles}
	if _, err := r.current(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current()
}

// GetClientCertificate implements tls.Config.GetClientCertificate.
func (r *CertReloader) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current()
}

// current returns the pair on disk, reloading it when a file changed. A
// pair that fails to load (caught between the key and the certificate being
// replaced) leaves the previous one in use until the next handshake.
func (r *CertReloader) current() (*tls.Certificate, error) {
	stamp, err := r.stat()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && r.cert != nil && stamp == r.stamp {
		return r.cert, nil
	}
	if err == nil {
		var cert *tls.Certificate
		if cert, err = r.load(); err == nil {
			r.cert, r.stamp = cert, stamp
			return cert, nil
		}
	}
	if r.cert == nil {
		return nil, err
	}
	return r.cert, nil
}

func (r *CertReloader) stat() ([2]fileStamp, error) {
	var out [2]fileStamp
	for i, p := range []string{r.pair.CertFile, r.pair.KeyFile} {
		st, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("pki: %w", err)
		}
		out[i] = fileStamp{mod: st.ModTime(), size: st.Size()}
	}
	return out, nil
}

func (r *CertReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.pair.CertFile, r.pair.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: load %s: %w", r.pair.CertFile, err)
	}
	for _, f := range r.chain {
		ca, err := readCert(f)
		if err != nil {
			return nil, err
		}
		cert.Certificate = append(cert.Certificate, ca.Raw)
	}
	return &cert, nil
}
