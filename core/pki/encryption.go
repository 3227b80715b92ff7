package pki

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// EncryptionKeyName names the key a new cluster's Secrets are encrypted
// with; it is stored in front of every encrypted value
// (k8s:enc:secretbox:v1:key1:...), so a rotation adds a key with another name.
const EncryptionKeyName = "key1"

// encryptionKeyInfo separates the key derived from the CA key (see
// ensureEncryptionConfig) from any other use of that key.
const encryptionKeyInfo = "keelson secrets-at-rest secretbox key v1"

// EncryptionConfiguration returns kube-apiserver's EncryptionConfiguration
// that encrypts Secrets with secretbox (XSalsa20-Poly1305, upstream's
// recommendation among the local providers) under key, and still reads
// Secrets written in clear before encryption was turned on (identity last).
func EncryptionConfiguration(key []byte) ([]byte, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("pki: a secretbox key has 32 bytes, got %d", len(key))
	}
	cfg := apiserverv1.EncryptionConfiguration{
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{
					{Name: EncryptionKeyName, Secret: base64.StdEncoding.EncodeToString(key)},
				}}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	cfg.APIVersion = apiserverv1.SchemeGroupVersion.String()
	cfg.Kind = "EncryptionConfiguration"
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("pki: encode encryption configuration: %w", err)
	}
	header := []byte("# Encrypts Secrets at rest. Keep this file secret (mode 0600) and identical on every\n" +
		"# server; see README \"Secrets at rest\" for key rotation.\n")
	return append(header, out...), nil
}

// ensureEncryptionConfig makes sure path holds an encryption configuration.
// A cluster whose CA was created in this start gets a random key. A data dir
// that had a CA but no configuration is a server of an existing cluster that
// upgraded (or joined through a server too old to send one): it derives the
// key from the cluster CA's private key, which every server of the cluster
// holds, so all of them arrive at the same key without talking to each other.
func ensureEncryptionConfig(path string, ca *authority, opts Options) error {
	switch _, err := os.Stat(path); {
	case err == nil:
		if err := CheckEncryptionConfig(path); err != nil {
			return err
		}
		return tightenKeyMode(path, opts.Logger)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pki: stat %s: %w", path, err)
	}
	key := make([]byte, 32)
	how := "random"
	if ca.created {
		if _, err := rand.Read(key); err != nil {
			return fmt.Errorf("pki: generate encryption key: %w", err)
		}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(ca.key)
		if err != nil {
			return fmt.Errorf("pki: encode CA key to derive the encryption key: %w", err)
		}
		if key, err = hkdf.Key(sha256.New, der, nil, encryptionKeyInfo, 32); err != nil {
			return fmt.Errorf("pki: derive encryption key: %w", err)
		}
		how = "derived from the cluster CA key (existing cluster)"
	}
	data, err := EncryptionConfiguration(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, data, keyMode); err != nil {
		return err
	}
	opts.Logger.Info("created the key that encrypts Secrets at rest", "file", path, "key", how)
	return nil
}

// CheckEncryptionConfig refuses a configuration kube-apiserver could not
// read, naming the file, before the API server fails on it less clearly.
// Its content is the operator's (rotation edits it), so only the shape is
// checked here; kube-apiserver validates the providers.
func CheckEncryptionConfig(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pki: read %s: %w", path, err)
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return fmt.Errorf("pki: %s is not an EncryptionConfiguration: %w (%w)", path, err, ErrCorrupt)
	}
	if cfg.Kind != "EncryptionConfiguration" || len(cfg.Resources) == 0 {
		return fmt.Errorf("pki: %s is not an EncryptionConfiguration with resources (kind %q, %d resources): restore it from another server or backup; removing it makes Secrets already encrypted unreadable: %w",
			path, cfg.Kind, len(cfg.Resources), ErrCorrupt)
	}
	return nil
}
