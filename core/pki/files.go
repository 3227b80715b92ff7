package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

const (
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

func join(dir, name string) string { return filepath.Join(dir, name) }

// presence reports which of the two files exist: 0 none, 1 one, 2 both. A stat
// error other than not-exist is returned, not guessed around.
func presence(paths ...string) (present []string, err error) {
	for _, p := range paths {
		_, err := os.Stat(p)
		switch {
		case err == nil:
			present = append(present, p)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("pki: stat %s: %w", p, err)
		}
	}
	return present, nil
}

// halfPresentError explains a pair where only one file exists. Regenerating the
// missing half would silently replace an identity, so the operator decides.
func halfPresentError(have, missing, what string) error {
	return fmt.Errorf("pki: %s exists but %s is missing: restore %s from backup, or remove %s to have a new %s created: %w",
		have, missing, missing, have, what, ErrCorrupt)
}

// writeFileAtomic replaces path with data so a crash leaves the old or the new
// content, never a torn file.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: chmod %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("pki: sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("pki: close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("pki: rename into %s: %w", path, err)
	}
	return nil
}

// readPEM returns the first PEM block of path.
func readPEM(path string) (*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: %s holds no PEM data; restore it from backup or remove it (and its pair) to have it recreated: %w", path, ErrCorrupt)
	}
	return block, nil
}

func readCert(path string) (*x509.Certificate, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: %s holds a %q PEM block, want CERTIFICATE: %w", path, block.Type, ErrCorrupt)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse certificate %s: %w (%w)", path, err, ErrCorrupt)
	}
	return cert, nil
}

// readKey accepts PKCS#8, SEC 1 and PKCS#1 so that keys made by other tools
// (openssl, kubeadm) can be dropped in.
func readKey(path string) (crypto.Signer, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: %s holds a %q PEM block, want a private key: %w", path, block.Type, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: parse private key %s: %w (%w)", path, err, ErrCorrupt)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: key type %T cannot sign: %w", path, key, ErrCorrupt)
	}
	return signer, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	block, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("pki: %s holds a %q PEM block, want PUBLIC KEY: %w", path, block.Type, ErrCorrupt)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse public key %s: %w (%w)", path, err, ErrCorrupt)
	}
	return pub, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodePublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// samePublicKey reports whether a and b are the same key; every public key type
// in the standard library implements Equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// tightenKeyMode makes a private key readable by its owner only. A key found
// group- or world-readable is repaired and logged rather than refused, since
// refusing would not make it any less exposed.
func tightenKeyMode(path string, log *slog.Logger) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("pki: stat %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, keyMode); err != nil {
		return fmt.Errorf("pki: restrict permissions of %s: %w", path, err)
	}
	log.Warn("private key was readable by others; restricted to owner", "file", path, "was", st.Mode().Perm().String())
	return nil
}
