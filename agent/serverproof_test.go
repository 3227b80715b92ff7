package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestProveAPIServer: a gossip-advertised API address is accepted only if it
// presents a kube-apiserver certificate of the cluster CA; a node's serving
// certificate from the same CA (what a compromised worker holds), even one
// naming 127.0.0.1, and a certificate of another CA are refused.
func TestProveAPIServer(t *testing.T) {
	ca, caKey := testCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	otherCA, otherKey := testCA(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, cn string
		orgs     []string
		ca       *x509.Certificate
		key      *ecdsa.PrivateKey
		wantErr  string
	}{
		{"api server", "kube-apiserver", nil, ca, caKey, ""},
		{"node serving certificate", "worker-1", []string{"system:nodes"}, ca, caKey, "is not an API server's"},
		{"node named kube-apiserver", "kube-apiserver", []string{"system:nodes"}, ca, caKey, "is not an API server's"},
		{"other cluster", "kube-apiserver", nil, otherCA, otherKey, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveTLSLeaf(t, tc.ca, tc.key, tc.cn, tc.orgs)
			err := proveAPIServer(ctx, caFile, addr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("proveAPIServer = %v, want accepted", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("proveAPIServer = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// serveTLSLeaf serves TLS on loopback with a leaf for cn/orgs naming
// 127.0.0.1, signed by ca, until the test ends.
func serveTLSLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, orgs []string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return l.Addr().String()
}
