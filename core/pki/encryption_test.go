package pki

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// secretboxKey returns the write key of the encryption configuration in path
// and checks the shape every server relies on: Secrets only, secretbox
// first, identity last so Secrets stored in clear stay readable.
func secretboxKey(t *testing.T, path string) string {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if cfg.Kind != "EncryptionConfiguration" || cfg.APIVersion != "apiserver.config.k8s.io/v1" || len(cfg.Resources) != 1 {
		t.Fatalf("unexpected configuration:\n%s", data)
	}
	r := cfg.Resources[0]
	if len(r.Resources) != 1 || r.Resources[0] != "secrets" || len(r.Providers) != 2 ||
		r.Providers[0].Secretbox == nil || r.Providers[1].Identity == nil || len(r.Providers[0].Secretbox.Keys) != 1 {
		t.Fatalf("want secrets under secretbox then identity, got:\n%s", data)
	}
	k := r.Providers[0].Secretbox.Keys[0]
	raw, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil || len(raw) != 32 || k.Name != EncryptionKeyName {
		t.Fatalf("key %q: %d bytes, %v", k.Name, len(raw), err)
	}
	return k.Secret
}

func TestEncryptionKeyNewClusterJoinAndUpgrade(t *testing.T) {
	var log bytes.Buffer
	first, other := t.TempDir(), t.TempDir()
	b1, err := Ensure(first, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	key1 := secretboxKey(t, b1.EncryptionConfig)
	b2, err := Ensure(other, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	if secretboxKey(t, b2.EncryptionConfig) == key1 {
		t.Fatal("two new clusters got the same encryption key")
	}
	// A restart keeps the key.
	if _, err := Ensure(first, testOpts(&log, t0)); err != nil || secretboxKey(t, b1.EncryptionConfig) != key1 {
		t.Fatalf("restart changed the key (err %v)", err)
	}

	// A joining server receives the same configuration with the other secrets.
	secrets, err := ExportCluster(first)
	if err != nil {
		t.Fatal(err)
	}
	joiner := t.TempDir()
	if err := ImportCluster(joiner, secrets); err != nil {
		t.Fatal(err)
	}
	bj, err := Ensure(joiner, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	if secretboxKey(t, bj.EncryptionConfig) != key1 {
		t.Fatal("a joined server has another encryption key")
	}

	// Servers of a cluster created before encryption (no configuration,
	// same CA) derive one key without talking to each other, and a joiner
	// whose supervisor sends none (an older server) derives the same.
	upgraded := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	secrets.EncryptionConfig = nil
	var keys []string
	for _, dir := range upgraded {
		if err := ImportCluster(dir, secrets); err != nil {
			t.Fatal(err)
		}
		b, err := Ensure(dir, testOpts(&log, t0))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, secretboxKey(t, b.EncryptionConfig))
	}
	if keys[0] != keys[1] || keys[1] != keys[2] {
		t.Fatal("servers of one upgraded cluster derived different keys")
	}
	if keys[0] == key1 {
		t.Fatal("the derived key equals the random one")
	}
	if !strings.Contains(log.String(), "derived from the cluster CA key") {
		t.Errorf("the derivation is not logged: %s", log.String())
	}
}

func TestEncryptionConfigRefusedWhenBroken(t *testing.T) {
	var log bytes.Buffer
	dir := t.TempDir()
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"not yaml":   "{{{",
		"wrong kind": "apiVersion: v1\nkind: ConfigMap\n",
		"empty":      "",
	} {
		t.Run(name, func(t *testing.T) {
			write(t, b.EncryptionConfig, []byte(content))
			_, err := Ensure(dir, testOpts(&log, t0))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), b.EncryptionConfig) {
				t.Fatalf("Ensure with a broken encryption configuration = %v", err)
			}
		})
	}
	// Another cluster's configuration is refused on import like its CA.
	secrets, err := ExportCluster(dir)
	if err != nil {
		t.Fatal(err)
	}
	good, err := EncryptionConfiguration(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	write(t, b.EncryptionConfig, good)
	secrets.EncryptionConfig = []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n")
	if err := ImportCluster(dir, secrets); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("importing a different encryption configuration = %v", err)
	}
	if _, err := EncryptionConfiguration(make([]byte, 16)); err == nil {
		t.Fatal("a 16-byte secretbox key was accepted")
	}
}
