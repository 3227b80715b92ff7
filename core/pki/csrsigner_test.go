package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"
)

// Every server of a cluster derives the same signer CA from the cluster CA
// it shares, and a server of another cluster a different one.
func TestCSRSignerIsDerivedFromTheClusterCA(t *testing.T) {
	var log bytes.Buffer
	first, err := Ensure(t.TempDir(), testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := ExportCluster(first.Dir)
	if err != nil {
		t.Fatal(err)
	}
	secondDir := t.TempDir()
	if err := ImportCluster(secondDir, secrets); err != nil {
		t.Fatal(err)
	}
	opts := testOpts(&log, t0)
	opts.Hostname = "node-b"
	second, err := Ensure(secondDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, pick := range []func(*Bundle) string{
		func(b *Bundle) string { return b.CSRSigner.CertFile },
		func(b *Bundle) string { return b.CSRSigner.KeyFile },
		func(b *Bundle) string { return b.ClientCA },
	} {
		a, b := read(t, pick(first)), read(t, pick(second))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two servers of one cluster", filepath.Base(pick(first)))
		}
	}
	if bytes.Equal(read(t, first.CSRSigner.CertFile), read(t, otherBundle(t).CSRSigner.CertFile)) {
		t.Error("two clusters derived the same signer CA")
	}
	if st, err := os.Stat(first.CSRSigner.KeyFile); err != nil || st.Mode().Perm() != keyMode {
		t.Errorf("signer key mode: %v %v, want %v", st.Mode(), err, keyMode)
	}
	// A restart rewrites nothing.
	log.Reset()
	if _, err := Ensure(first.Dir, testOpts(&log, t0)); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(log.Bytes(), []byte("certificates.k8s.io signers")) {
		t.Errorf("restart rewrote the signer CA:\n%s", log.String())
	}
}

// What the signer CA signs is an API client (the client CA bundle trusts
// it) and nothing else: not trusted where the cluster CA alone is.
func TestCSRSignerCertificatesAreClientsOnly(t *testing.T) {
	var log bytes.Buffer
	b, err := Ensure(t.TempDir(), testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	signer, key, err := readPair(b.CSRSigner, "")
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: PeerPrefix + "evil", Organization: []string{MastersGroup}},
		NotBefore: t0.Add(-clockSkew), NotAfter: t0.Add(LeafLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"kubernetes.default.svc"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, leafKey.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	if !clients.AppendCertsFromPEM(read(t, b.ClientCA)) {
		t.Fatal("client CA bundle holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: clients, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the API server's client CA does not accept a signed client certificate: %v", err)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool(t, b.CA.CertFile), CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage},
			Intermediates: pool(t, b.CSRSigner.CertFile)})
		if err == nil {
			t.Errorf("the cluster CA (peers, servers, kubelets) accepts a certificate of the CSR signer for usage %v", usage)
		}
	}
	// The cluster CA's own leaves still verify against the bundle.
	if _, err := mustCert(t, b.Admin.CertFile).Verify(x509.VerifyOptions{Roots: clients, CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin certificate against the client CA bundle: %v", err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
