package pki

import (
	"crypto/x509"
	"fmt"
	"time"
)

// CertStatus is what an operator needs to know about one certificate of a
// server's PKI.
type CertStatus struct {
	// Name says what the certificate is for, e.g. "cluster CA".
	Name string `json:"name"`
	// File is the certificate's path.
	File     string    `json:"file"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
	// Renewable is true for the leaves the server reissues by itself; the
	// CAs are never replaced automatically.
	Renewable bool `json:"renewable"`
	// RenewAt is when a running server reissues a renewable certificate.
	RenewAt time.Time `json:"renewAt,omitzero"`
	// Warning is set when the certificate needs an operator: a CA within
	// CAExpiryWarning of its expiry, or anything already expired.
	Warning string `json:"warning,omitempty"`
}

// CheckExpiry reports every certificate of the server PKI in dir, with a
// warning on those that need an operator at now.
func CheckExpiry(dir string, now time.Time) ([]CertStatus, error) {
	b := newBundle(dir)
	certs := []struct {
		name      string
		file      string
		renewable bool
	}{
		{"cluster CA", b.CA.CertFile, false},
		{"front-proxy CA", b.FrontProxyCA.CertFile, false},
		{"API serving", b.Serving.CertFile, true},
		{"admin client", b.Admin.CertFile, true},
		{"kubelet client", b.KubeletClient.CertFile, true},
		{"front-proxy client", b.FrontProxyClient.CertFile, true},
		{"server peer", b.Peer.CertFile, true},
	}
	var out []CertStatus
	for _, c := range certs {
		cert, err := readCert(c.file)
		if err != nil {
			return nil, err
		}
		st := CertStatus{Name: c.name, File: c.file, Subject: cert.Subject.CommonName, NotAfter: cert.NotAfter, Renewable: c.renewable}
		if c.renewable {
			st.RenewAt = renewalTime(cert)
		}
		st.Warning = expiryWarning(cert, c.renewable, now)
		out = append(out, st)
	}
	return out, nil
}

func expiryWarning(cert *x509.Certificate, renewable bool, now time.Time) string {
	left := cert.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return fmt.Sprintf("expired on %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case !renewable && left < CAExpiryWarning:
		return fmt.Sprintf("expires in %s (on %s) and is never replaced automatically: rotate the CA before then",
			left.Round(time.Hour), cert.NotAfter.UTC().Format(time.RFC3339))
	case renewable && now.After(renewalTime(cert).Add(cert.NotAfter.Sub(cert.NotBefore)/6)):
		// Half of the last third has passed without a renewal: the server
		// that owns it is not running or cannot renew.
		return fmt.Sprintf("should have been renewed on %s; is the server running?", renewalTime(cert).UTC().Format(time.RFC3339))
	}
	return ""
}

// WarnExpiring logs a warning for every certificate of the PKI in dir that
// needs an operator (see CheckExpiry).
func (b *Bundle) WarnExpiring(opts Options) error {
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	statuses, err := CheckExpiry(b.Dir, opts.Now())
	if err != nil {
		return err
	}
	for _, st := range statuses {
		if st.Warning != "" {
			opts.Logger.Warn("certificate needs attention: "+st.Warning, "certificate", st.Name, "file", st.File, "notAfter", st.NotAfter)
		}
	}
	return nil
}
