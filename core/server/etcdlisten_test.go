package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/pki"
)

// testCA makes a CA and a client certificate it signed.
func testCA(t *testing.T) (caPEM []byte, client tls.Certificate) {
	t.Helper()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "etcdctl"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestEtcdListenerRequiresClientCertificates: with --etcd-client-ca the
// operator's etcd listener completes a TLS handshake only with a client
// certificate that CA signed.
func TestEtcdListenerRequiresClientCertificates(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.Ensure(filepath.Join(dir, "pki"), pki.Options{Hostname: "s1", NodeName: "s1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, good := testCA(t)
	_, foreign := testCA(t)
	caFile := filepath.Join(dir, "etcd-client-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: config.Server{EtcdListen: "127.0.0.1:0", EtcdClientCA: caFile}, bundle: b}
	l, err := s.etcdListener()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if tc, ok := c.(*tls.Conn); ok && tc.Handshake() == nil {
					c.Write([]byte("ok"))
				}
			}()
		}
	}()
	dial := func(certs ...tls.Certificate) error {
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{Certificates: certs, InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // the test checks the server's side
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		return err
	}
	if err := dial(good); err != nil {
		t.Errorf("client certificate of the configured CA: %v", err)
	}
	if err := dial(); err == nil {
		t.Error("no client certificate: the listener answered")
	}
	if err := dial(foreign); err == nil {
		t.Error("client certificate of another CA: the listener answered")
	}
}
