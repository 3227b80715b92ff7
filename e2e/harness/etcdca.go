package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// EtcdClientCA is a CA a test makes for its etcd clients: a server whose
// --etcd-listen is off loopback must require client certificates
// (--etcd-client-ca File), as etcd's --client-cert-auth.
type EtcdClientCA struct {
	// File is the CA certificate, for --etcd-client-ca.
	File   string
	client tls.Certificate
}

// NewEtcdClientCA makes a CA and one client certificate it signed.
func NewEtcdClientCA(t testing.TB) *EtcdClientCA {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e etcd client CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key := newKey()
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "e2e etcdctl"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "etcd-client-ca.crt")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &EtcdClientCA{File: file, client: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

// TLS is a client configuration that presents the client certificate and
// trusts the cluster CA of the server whose data dir is dataDir. The CA is
// read at each handshake: a new server writes it only when it first starts.
func (c *EtcdClientCA) TLS(dataDir string) *tls.Config {
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		caPEM, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
		if err != nil {
			return err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) || len(raw) == 0 {
			return errors.New("no cluster CA or no server certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool})
		return err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{c.client},
		// The chain is verified against the cluster CA above: its file does
		// not exist yet when the client is made.
		InsecureSkipVerify:    true, //nolint:gosec
		VerifyPeerCertificate: verify,
		MinVersion:            tls.VersionTLS12,
	}
}
