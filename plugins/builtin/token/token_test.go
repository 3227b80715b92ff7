package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"strings"
	"testing"

	jose "gopkg.in/go-jose/go-jose.v2"
	"gopkg.in/go-jose/go-jose.v2/jwt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestTokenVerifiesWithThePublicKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name string
		key  any
		pub  any
		alg  string
	}{
		{"ecdsa P-256 (keelson's key)", ec, &ec.PublicKey, "ES256"},
		{"rsa", rsaKey, &rsaKey.PublicKey, "RS256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSigner(pkcs8(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := s.token("ns", "builder", "sa-uid", "builder-token")
			if err != nil {
				t.Fatal(err)
			}
			tok, err := jwt.ParseSigned(raw)
			if err != nil {
				t.Fatal(err)
			}
			wantKID, _ := keyID(tc.pub)
			if h := tok.Headers[0]; h.KeyID != wantKID || h.Algorithm != tc.alg {
				t.Errorf("header kid %q alg %q, want %q %q", h.KeyID, h.Algorithm, wantKID, tc.alg)
			}
			var pub jwt.Claims
			var priv legacyClaims
			if err := tok.Claims(tc.pub, &pub, &priv); err != nil {
				t.Fatalf("token does not verify with the public key: %v", err)
			}
			if pub.Issuer != legacyIssuer || pub.Subject != "system:serviceaccount:ns:builder" || pub.Expiry != nil {
				t.Errorf("claims %+v: want the legacy issuer, the service account as subject, no expiry", pub)
			}
			want := legacyClaims{ServiceAccountName: "builder", ServiceAccountUID: "sa-uid", SecretName: "builder-token", Namespace: "ns"}
			if priv != want {
				t.Errorf("private claims %+v, want %+v", priv, want)
			}
		})
	}
}

func TestBadKeys(t *testing.T) {
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	for _, tc := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"not PEM", []byte("hello"), "parsing serviceAccountKeyPEM"},
		{"unsupported curve", pkcs8(t, p224), "unsupported elliptic curve"},
	} {
		if _, err := newSigner(tc.pem); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
	err := sdk.RunLocal(context.Background(), Plugin(), sdk.LocalOptions{Config: json.RawMessage(`{}`), RESTConfig: &rest.Config{Host: "https://127.0.0.1:1"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "serviceAccountKeyPEM is required") {
		t.Errorf("plugin without a key: %v", err)
	}
}

// fixture is a controller over a fake API whose caches hold objs.
func fixture(t *testing.T, objs ...any) (*controller, *fake.Clientset) {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	s, err := newSigner(pkcs8(t, ec))
	if err != nil {
		t.Fatal(err)
	}
	saIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	secIdx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	var rt []any
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			_ = saIdx.Add(o)
		case *corev1.Secret:
			_ = secIdx.Add(o)
		}
		rt = append(rt, o)
	}
	client := fake.NewClientset()
	for _, o := range rt {
		switch o := o.(type) {
		case *corev1.ServiceAccount:
			_ = client.Tracker().Add(o)
		case *corev1.Secret:
			_ = client.Tracker().Add(o)
		}
	}
	return &controller{
		client: client, accounts: corelisters.NewServiceAccountLister(saIdx), secrets: corelisters.NewSecretLister(secIdx),
		signer: s, rootCA: []byte("CA"), logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, client
}

func sa(name string, uid types.UID, secrets ...string) *corev1.ServiceAccount {
	a := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid}}
	for _, s := range secrets {
		a.Secrets = append(a.Secrets, corev1.ObjectReference{Name: s})
	}
	return a
}

func tokenSecret(name, account string, uid types.UID) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid, ResourceVersion: "1",
			Annotations: map[string]string{corev1.ServiceAccountNameKey: account}},
		Type: corev1.SecretTypeServiceAccountToken,
	}
}

func keyOf(s *corev1.Secret) key {
	return key{secret: true, namespace: s.Namespace, name: s.Name, uid: s.UID,
		saName: s.Annotations[corev1.ServiceAccountNameKey], saUID: types.UID(s.Annotations[corev1.ServiceAccountUIDKey])}
}

func TestPopulatesTokenSecret(t *testing.T) {
	ctx := context.Background()
	secret := tokenSecret("t", "builder", "s1")
	c, client := fixture(t, sa("builder", "sa1"), secret)
	if _, err := c.reconcile(ctx, keyOf(secret)); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Secrets("ns").Get(ctx, "t", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data["ca.crt"]) != "CA" || string(got.Data["namespace"]) != "ns" || len(got.Data["token"]) == 0 {
		t.Errorf("data %v", got.Data)
	}
	if got.Annotations[corev1.ServiceAccountUIDKey] != "sa1" {
		t.Errorf("uid annotation %q", got.Annotations[corev1.ServiceAccountUIDKey])
	}
	if _, err := jose.ParseSigned(string(got.Data["token"])); err != nil {
		t.Errorf("token is not a JWS: %v", err)
	}
}

func TestDeletesTokensOfMissingAccounts(t *testing.T) {
	ctx := context.Background()
	orphan := tokenSecret("orphan", "gone", "s1")
	mine := tokenSecret("mine", "builder", "s2")
	mine.Annotations[corev1.ServiceAccountUIDKey] = "old-uid"
	other := tokenSecret("other", "builder", "s3")
	other.Annotations[corev1.ServiceAccountUIDKey] = "new-uid"
	c, client := fixture(t, orphan, mine, other, sa("builder", "new-uid"))

	// A secret naming an account that does not exist goes.
	if _, err := c.reconcile(ctx, keyOf(orphan)); err != nil {
		t.Fatal(err)
	}
	// The account "builder" with UID old-uid was deleted (and recreated):
	// only its own tokens go.
	if _, err := c.reconcile(ctx, key{namespace: "ns", name: "builder", uid: "old-uid"}); err != nil {
		t.Fatal(err)
	}
	list, _ := client.CoreV1().Secrets("ns").List(ctx, metav1.ListOptions{})
	var left []string
	for _, s := range list.Items {
		left = append(left, s.Name)
	}
	if strings.Join(left, ",") != "other" {
		t.Errorf("secrets left %v, want only the one of the live account", left)
	}
}

func TestRemovesReferenceToDeletedSecret(t *testing.T) {
	ctx := context.Background()
	account := sa("builder", "sa1", "gone-token", "kept")
	c, client := fixture(t, account)
	k := key{secret: true, namespace: "ns", name: "gone-token", uid: "s1", saName: "builder", saUID: "sa1"}
	if _, err := c.reconcile(ctx, k); err != nil {
		t.Fatal(err)
	}
	got, _ := client.CoreV1().ServiceAccounts("ns").Get(ctx, "builder", metav1.GetOptions{})
	if len(got.Secrets) != 1 || got.Secrets[0].Name != "kept" {
		t.Errorf("secrets %v, want only kept", got.Secrets)
	}
}
