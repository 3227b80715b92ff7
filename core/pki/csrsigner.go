package pki

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
)

// csrSignerInfo separates the CSR signer's key, derived from the cluster CA
// key, from any other use of that key.
const csrSignerInfo = "keelson certificates.k8s.io signer CA ed25519 seed v1"

// CSRSignerCN is the subject of the CA that signs approved
// CertificateSigningRequests.
const CSRSignerCN = "keelson-csr-signer-ca"

// ensureCSRSigner writes the CA of the certificates.k8s.io signers and the
// API server's client CA bundle (cluster CA + signer CA).
//
// The signer CA is its own root, not an intermediate of the cluster CA, so
// what it signs is trusted only where the bundle is: as an API client.
// Servers, agents, raft peers and kubelets verify against the cluster CA
// alone, so a certificate obtained through the CSR API (kubelet-serving,
// legacy-unknown) can never pose as a server, a peer or a node, and the key
// handed to the signing plugin cannot mint such identities either.
//
// Its key and certificate are derived from the cluster CA (the key through
// HKDF, the certificate with Ed25519's deterministic signature, the CA's
// validity and a serial from the key), so every server of a cluster, new
// or upgraded, arrives at the same bytes without exchanging them.
func (b *Bundle) ensureCSRSigner(ca *authority, opts Options) error {
	certPEM, keyPEM, err := deriveCSRSigner(ca)
	if err != nil {
		return err
	}
	wrote, err := writeIfChanged(b.CSRSigner.KeyFile, keyPEM, keyMode)
	if err != nil {
		return err
	}
	if _, err := writeIfChanged(b.CSRSigner.CertFile, certPEM, certMode); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(b.CA.CertFile)
	if err != nil {
		return fmt.Errorf("pki: read %s for the client CA bundle: %w", b.CA.CertFile, err)
	}
	bundle := append(bytes.TrimRight(caPEM, "\n"), '\n')
	if _, err := writeIfChanged(b.ClientCA, append(bundle, certPEM...), certMode); err != nil {
		return err
	}
	if wrote {
		opts.Logger.Info("wrote the CA of the certificates.k8s.io signers (derived from the cluster CA)", "file", b.CSRSigner.CertFile)
	}
	return nil
}

// deriveCSRSigner returns the signer CA's certificate and key (PEM) for the
// cluster CA ca; the same CA always yields the same bytes.
func deriveCSRSigner(ca *authority) (certPEM, keyPEM []byte, err error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: encode CA key to derive the CSR signer: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, der, nil, csrSignerInfo, ed25519.SeedSize)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: derive the CSR signer key: %w", err)
	}
	key := ed25519.NewKeyFromSeed(seed)
	pub := key.Public().(ed25519.PublicKey)
	id := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(id[:16]),
		Subject:               pkix.Name{CommonName: CSRSignerCN, Organization: []string{"keelson"}},
		NotBefore:             ca.cert.NotBefore,
		NotAfter:              ca.cert.NotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          id[:20],
	}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: sign the CSR signer CA: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return encodeCert(cert), keyPEM, nil
}

// writeIfChanged writes data to path unless it already holds exactly that,
// and says whether it wrote.
func writeIfChanged(path string, data []byte, mode fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, data):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("pki: read %s: %w", path, err)
	}
	return true, writeFileAtomic(path, data, mode)
}
