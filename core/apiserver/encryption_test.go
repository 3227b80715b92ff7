package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// storedSecret is the raw value kube-apiserver stored for a Secret.
func storedSecret(t *testing.T, ns, name string) []byte {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + env.etcd}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "/registry/secrets/"+ns+"/"+name)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("reading the stored secret: %v (%d keys)", err, len(resp.Kvs))
	}
	return resp.Kvs[0].Value
}

func createSecret(t *testing.T, name string, plaintext []byte) {
	t.Helper()
	_, err := env.client.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Data:       map[string][]byte{"password": plaintext},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSecretsEncryptedAndKeyRotation follows the README's rotation procedure
// on the running server: Secrets are stored under key1, a new key put first
// in the file is picked up without a restart, rewriting moves old Secrets
// to it, and Secrets stored in clear before encryption stay readable.
func TestSecretsEncryptedAndKeyRotation(t *testing.T) {
	requireServer(t)
	ctx := context.Background()
	plain := []byte("integration-plaintext-4711")
	createSecret(t, "enc-a", plain)
	stored := storedSecret(t, "default", "enc-a")
	if !bytes.HasPrefix(stored, []byte("k8s:enc:secretbox:v1:key1:")) || bytes.Contains(stored, plain) {
		t.Fatalf("stored secret is not secretbox-encrypted under key1: %q", stored[:min(len(stored), 60)])
	}

	// Rotation, step 1: add key2 first (key1 stays to read older values).
	path := env.cfg.EncryptionConfig
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(path, orig, 0o600) })
	var cfg apiserverv1.EncryptionConfiguration
	if err := yaml.Unmarshal(orig, &cfg); err != nil {
		t.Fatal(err)
	}
	sb := cfg.Resources[0].Providers[0].Secretbox
	sb.Keys = append([]apiserverv1.Key{{Name: "key2", Secret: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))}}, sb.Keys...)
	rotated, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, rotated, 0o600); err != nil {
		t.Fatal(err)
	}
	// Step 2: the running server reloads the file (no restart).
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		name := "enc-probe-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		createSecret(t, name, plain)
		if bytes.HasPrefix(storedSecret(t, "default", name), []byte("k8s:enc:secretbox:v1:key2:")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new Secrets are still written under key1 two minutes after key2 was added first")
		}
		time.Sleep(time.Second)
	}
	// Step 3: rewrite the old Secret; it moves to key2 and reads back intact.
	s, err := env.client.CoreV1().Secrets("default").Get(ctx, "enc-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.client.CoreV1().Secrets("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := storedSecret(t, "default", "enc-a"); !bytes.HasPrefix(got, []byte("k8s:enc:secretbox:v1:key2:")) {
		t.Fatalf("rewritten secret still under %q", got[:min(len(got), 30)])
	}
	s, err = env.client.CoreV1().Secrets("default").Get(ctx, "enc-a", metav1.GetOptions{})
	if err != nil || !bytes.Equal(s.Data["password"], plain) {
		t.Fatalf("rotated secret reads back %q, %v", s.Data["password"], err)
	}
}

// TestSecretsStoredInClearStayReadable: the identity fallback lets a cluster
// that stored Secrets before encryption was turned on read them.
func TestSecretsStoredInClearStayReadable(t *testing.T) {
	requireServer(t)
	ctx := context.Background()
	// Replace the stored value with what an unencrypted server wrote: the
	// same object, without the envelope. Reading it back through a fresh
	// Get proves the identity provider answers.
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + env.etcd}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	obj := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{Kind: "Secret", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "enc-legacy2", Namespace: "default", UID: "0c2a9e8c-0000-4000-8000-000000000001", CreationTimestamp: metav1.Now()},
		Data:       map[string][]byte{"password": []byte("legacy-clear")},
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/registry/secrets/default/enc-legacy2", string(raw)); err != nil {
		t.Fatal(err)
	}
	got, err := env.client.CoreV1().Secrets("default").Get(ctx, "enc-legacy2", metav1.GetOptions{})
	if err != nil || string(got.Data["password"]) != "legacy-clear" {
		t.Fatalf("a Secret stored in clear reads back %v, %v", got, err)
	}
}
