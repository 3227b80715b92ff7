package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ClusterSecrets are what make several servers one cluster: the two CAs with
// their keys and the service-account signing key pair. A joining server
// receives them (over TLS pinned by the join token) before it creates its
// own leaf certificates, so certificates and tokens issued by any server are
// accepted by all.
type ClusterSecrets struct {
	CACert           []byte `json:"caCert"`
	CAKey            []byte `json:"caKey"`
	FrontProxyCACert []byte `json:"frontProxyCACert"`
	FrontProxyCAKey  []byte `json:"frontProxyCAKey"`
	SAKey            []byte `json:"saKey"`
	SAPub            []byte `json:"saPub"`
	// EncryptionConfig is the EncryptionConfiguration (with its keys) that
	// encrypts Secrets at rest: every server must hold the same one to read
	// what the others wrote. Empty from a server older than this field; the
	// joiner then derives the key as an upgraded server does.
	EncryptionConfig []byte `json:"encryptionConfig,omitempty"`
}

// secretFile is one file of the cluster secrets; an optional one may be
// absent on the sending side.
type secretFile struct {
	path     string
	data     *[]byte
	mode     os.FileMode
	optional bool
}

func (s *ClusterSecrets) files(b *Bundle) []secretFile {
	return []secretFile{
		{b.CA.CertFile, &s.CACert, 0o644, false}, {b.CA.KeyFile, &s.CAKey, 0o600, false},
		{b.FrontProxyCA.CertFile, &s.FrontProxyCACert, 0o644, false}, {b.FrontProxyCA.KeyFile, &s.FrontProxyCAKey, 0o600, false},
		{b.ServiceAccountKey, &s.SAKey, 0o600, false}, {b.ServiceAccountPublicKey, &s.SAPub, 0o644, false},
		{b.EncryptionConfig, &s.EncryptionConfig, 0o600, true},
	}
}

// ExportCluster reads the cluster secrets of the PKI in dir.
func ExportCluster(dir string) (*ClusterSecrets, error) {
	s := &ClusterSecrets{}
	for _, f := range s.files(newBundle(dir)) {
		b, err := os.ReadFile(f.path)
		if f.optional && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pki: export cluster secrets: %w", err)
		}
		*f.data = b
	}
	return s, nil
}

// ImportCluster writes cluster secrets into dir before Ensure runs there.
// Files already present must be identical: a data dir that belongs to
// another cluster is refused rather than silently re-keyed.
func ImportCluster(dir string, s *ClusterSecrets) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: create directory %s: %w", dir, err)
	}
	if _, err := tls.X509KeyPair(s.CACert, s.CAKey); err != nil {
		return fmt.Errorf("pki: received cluster CA is unusable: %w", err)
	}
	for _, f := range s.files(newBundle(dir)) {
		if f.optional && len(*f.data) == 0 {
			continue
		}
		have, err := os.ReadFile(f.path)
		switch {
		case err == nil && bytes.Equal(have, *f.data):
			continue
		case err == nil:
			return fmt.Errorf("pki: %s differs from the cluster's: this data dir belongs to another cluster; use a fresh --data-dir to join", f.path)
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("pki: %w", err)
		}
		if err := writeFileAtomic(f.path, *f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// CAHash is the hex SHA-256 of a CA certificate's DER bytes; join tokens
// carry it so that a joining server can pin the cluster it talks to.
func CAHash(caCertFile string) (string, error) {
	cert, err := readCert(caCertFile)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:]), nil
}

// PeerTLS returns the mutual-TLS configuration servers use between each
// other: both sides present their peer certificate and accept only peer
// certificates of the cluster CA. Servers dial each other by address, so the
// chain and the peer CN prefix are verified instead of a host name. The peer
// certificate is re-read when Renew replaces it (see CertReloader).
func (b *Bundle) PeerTLS() (*tls.Config, error) {
	pair, err := NewCertReloader(b.Peer)
	if err != nil {
		return nil, fmt.Errorf("pki: peer certificate: %w", err)
	}
	ca, err := readCert(b.CA.CertFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("pki: peer presented no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return fmt.Errorf("pki: peer certificate: %w", err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return fmt.Errorf("pki: peer certificate %q is not from this cluster's CA (wrong token or CA?): %w", leaf.Subject.CommonName, err)
		}
		if !strings.HasPrefix(leaf.Subject.CommonName, PeerPrefix) {
			return fmt.Errorf("pki: certificate %q is not a server's peer certificate", leaf.Subject.CommonName)
		}
		return nil
	}
	return &tls.Config{
		GetCertificate:       pair.GetCertificate,
		GetClientCertificate: pair.GetClientCertificate,
		// Chain and CN are checked in VerifyPeerCertificate, on both ends.
		InsecureSkipVerify:    true, //nolint:gosec // verified below against the cluster CA
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
		MinVersion:            tls.VersionTLS13,
	}, nil
}
