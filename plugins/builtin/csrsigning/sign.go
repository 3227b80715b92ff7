package csrsigning

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/csrrules"
)

// backdate is how far before now a certificate starts, so a client whose
// clock is a little behind accepts it at once (upstream backdates by as much).
const backdate = 5 * time.Minute

// authority signs with the signer CA.
type authority struct {
	cert     *x509.Certificate
	key      crypto.Signer
	duration time.Duration
	clock    clock.PassiveClock
}

// invalidRequest is a request its signer will never sign.
type invalidRequest struct{ err error }

func (e *invalidRequest) Error() string { return e.err.Error() }

func newAuthority(cfg Config, clk clock.PassiveClock) (*authority, error) {
	if cfg.CACertPEM == "" || cfg.CAKeyPEM == "" {
		return nil, errors.New("caCertPEM and caKeyPEM are empty: the server fills them in with its signer CA; set both or neither")
	}
	pair, err := tls.X509KeyPair([]byte(cfg.CACertPEM), []byte(cfg.CAKeyPEM))
	if err != nil {
		return nil, fmt.Errorf("caCertPEM/caKeyPEM: %w", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("caCertPEM: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("caCertPEM is not a CA certificate")
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("caKeyPEM: a %T cannot sign", pair.PrivateKey)
	}
	if d := cfg.ClusterSigningDuration.Duration; d < 10*time.Minute {
		return nil, fmt.Errorf("clusterSigningDuration %s is shorter than the 10m a CSR may ask for; use e.g. 8760h", d)
	}
	return &authority{cert: cert, key: key, duration: cfg.ClusterSigningDuration.Duration, clock: clk}, nil
}

// sign returns the PEM certificate for csr, or an *invalidRequest when the
// request breaks its signer's rules.
func (a *authority) sign(csr *certificatesv1.CertificateSigningRequest) ([]byte, error) {
	req, err := csrrules.ParseRequest(csr.Spec.Request)
	if err != nil {
		return nil, &invalidRequest{err}
	}
	if err := csrrules.Validate(csr.Spec.SignerName, req, csr.Spec.Usages); err != nil {
		return nil, &invalidRequest{err}
	}
	keyUsage, extUsage, err := x509Usages(csr.Spec.Usages)
	if err != nil {
		return nil, &invalidRequest{err}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	now := a.clock.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               req.Subject,
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		EmailAddresses:        req.EmailAddresses,
		URIs:                  req.URIs,
		NotBefore:             now.Add(-backdate),
		NotAfter:              a.notAfter(now, csr.Spec.ExpirationSeconds),
		KeyUsage:              keyUsage,
		ExtKeyUsage:           extUsage,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, req.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("creating the certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// notAfter is the end of a certificate issued at now: the configured
// duration, or the shorter spec.expirationSeconds, and never past the CA.
func (a *authority) notAfter(now time.Time, expirationSeconds *int32) time.Time {
	d := a.duration
	if expirationSeconds != nil {
		if asked := time.Duration(*expirationSeconds) * time.Second; asked < d {
			d = asked
		}
	}
	end := now.Add(d)
	if end.After(a.cert.NotAfter) {
		end = a.cert.NotAfter
	}
	return end
}

// x509Usages maps spec.usages to the certificate's key usages.
func x509Usages(usages []certificatesv1.KeyUsage) (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	var ku x509.KeyUsage
	var ext []x509.ExtKeyUsage
	for _, u := range usages {
		if k, ok := keyUsages[u]; ok {
			ku |= k
		} else if e, ok := extKeyUsages[u]; ok {
			ext = append(ext, e)
		} else {
			return 0, nil, fmt.Errorf("spec.usages: unknown usage %q", u)
		}
	}
	return ku, ext, nil
}

var keyUsages = map[certificatesv1.KeyUsage]x509.KeyUsage{
	certificatesv1.UsageSigning:           x509.KeyUsageDigitalSignature,
	certificatesv1.UsageDigitalSignature:  x509.KeyUsageDigitalSignature,
	certificatesv1.UsageContentCommitment: x509.KeyUsageContentCommitment,
	certificatesv1.UsageKeyEncipherment:   x509.KeyUsageKeyEncipherment,
	certificatesv1.UsageKeyAgreement:      x509.KeyUsageKeyAgreement,
	certificatesv1.UsageDataEncipherment:  x509.KeyUsageDataEncipherment,
	certificatesv1.UsageCertSign:          x509.KeyUsageCertSign,
	certificatesv1.UsageCRLSign:           x509.KeyUsageCRLSign,
	certificatesv1.UsageEncipherOnly:      x509.KeyUsageEncipherOnly,
	certificatesv1.UsageDecipherOnly:      x509.KeyUsageDecipherOnly,
}

var extKeyUsages = map[certificatesv1.KeyUsage]x509.ExtKeyUsage{
	certificatesv1.UsageAny:             x509.ExtKeyUsageAny,
	certificatesv1.UsageServerAuth:      x509.ExtKeyUsageServerAuth,
	certificatesv1.UsageClientAuth:      x509.ExtKeyUsageClientAuth,
	certificatesv1.UsageCodeSigning:     x509.ExtKeyUsageCodeSigning,
	certificatesv1.UsageEmailProtection: x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageSMIME:           x509.ExtKeyUsageEmailProtection,
	certificatesv1.UsageIPsecEndSystem:  x509.ExtKeyUsageIPSECEndSystem,
	certificatesv1.UsageIPsecTunnel:     x509.ExtKeyUsageIPSECTunnel,
	certificatesv1.UsageIPsecUser:       x509.ExtKeyUsageIPSECUser,
	certificatesv1.UsageTimestamping:    x509.ExtKeyUsageTimeStamping,
	certificatesv1.UsageOCSPSigning:     x509.ExtKeyUsageOCSPSigning,
	certificatesv1.UsageMicrosoftSGC:    x509.ExtKeyUsageMicrosoftServerGatedCrypto,
	certificatesv1.UsageNetscapeSGC:     x509.ExtKeyUsageNetscapeServerGatedCrypto,
}
