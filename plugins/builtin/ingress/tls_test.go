package ingress

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
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// selfSigned returns a PEM certificate and key for hosts.
func selfSigned(t testing.TB, hosts ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "test"},
		DNSNames: hosts, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func tlsSecret(t testing.TB, name string, hosts ...string) *v1.Secret {
	c, k := selfSigned(t, hosts...)
	return &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Type: v1.SecretTypeTLS,
		Data: map[string][]byte{v1.TLSCertKey: c, v1.TLSPrivateKeyKey: k}}
}

func withTLS(i *networkingv1.Ingress, secret string, hosts ...string) *networkingv1.Ingress {
	i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{SecretName: secret, Hosts: hosts})
	return i
}

// tlsWorld builds through the bundle, as the two parts do: the leader
// publishes the pairs, the node parses them.
func tlsWorld(t *testing.T, secrets []*v1.Secret, ings ...*networkingv1.Ingress) (World, []string) {
	bundle, problems := Bundle(ings, func(ns, name string) *v1.Secret {
		for _, s := range secrets {
			if s.Namespace == ns && s.Name == name {
				return s
			}
		}
		return nil
	})
	w := world(ings...)
	var cache certCache
	w.Cert = func(ns, name string) (*tls.Certificate, error) {
		c, k, err := bundleCert(bundle, ns, name)
		if err != nil {
			return nil, err
		}
		return cache.get(c, k, map[[32]byte]bool{})
	}
	return w, problems
}

func servedNames(t *testing.T, tab *Table, sni string) []string {
	t.Helper()
	cert, err := tab.certs.choose(sni)
	if err != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.DNSNames
}

func TestTLSSelectionBySNI(t *testing.T) {
	secrets := []*v1.Secret{tlsSecret(t, "foo", "foo.com"), tlsSecret(t, "wild", "*.bar.com"), tlsSecret(t, "fallback", "fallback")}
	a := withTLS(ing("a", 2, rule("foo.com", path{"/", prefix, "foo"})), "foo", "foo.com")
	b := withTLS(ing("b", 1, rule("*.bar.com", path{"/", prefix, "bar"})), "wild", "*.bar.com")
	w, problems := tlsWorld(t, secrets, a, b)
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
	tab := Build(w)
	for sni, want := range map[string]string{"foo.com": "foo.com", "FOO.com": "foo.com", "x.bar.com": "*.bar.com", "y.x.bar.com": "", "bar.com": "", "": ""} {
		got := servedNames(t, tab, sni)
		if (want == "" && got != nil) || (want != "" && (len(got) != 1 || got[0] != want)) {
			t.Errorf("SNI %q served %v, want %q", sni, got, want)
		}
	}
	// A TLS section without hosts is the certificate for every other name.
	c := withTLS(ing("c", 0), "fallback")
	w, _ = tlsWorld(t, secrets, a, b, c)
	if got := servedNames(t, Build(w), "other.org"); len(got) != 1 || got[0] != "fallback" {
		t.Errorf("SNI other.org with a hostless TLS section served %v, want the fallback", got)
	}
}

func TestBundleHoldsOnlyReferencedTLSSecrets(t *testing.T) {
	notTLS := tlsSecret(t, "opaque", "x")
	notTLS.Type = v1.SecretTypeOpaque
	secrets := []*v1.Secret{tlsSecret(t, "used", "a.com"), tlsSecret(t, "unused", "b.com"), notTLS}
	i := withTLS(withTLS(withTLS(ing("i", 0), "used", "a.com"), "opaque", "x"), "absent", "y")
	_, problems := tlsWorld(t, secrets, i)
	bundle, _ := Bundle([]*networkingv1.Ingress{i}, func(ns, name string) *v1.Secret {
		for _, s := range secrets {
			if s.Name == name {
				return s
			}
		}
		return nil
	})
	if len(bundle) != 2 || bundle["default_used.tls.crt"] == nil || bundle["default_used.tls.key"] == nil {
		t.Errorf("bundle keys %v, want default_used.tls.crt and .key only", keys(bundle))
	}
	if len(problems) != 2 {
		t.Errorf("problems %q, want the Opaque secret and the absent one", problems)
	}
	w, _ := tlsWorld(t, secrets, i)
	if tab := Build(w); len(tab.Problems) != 2 {
		t.Errorf("table problems %q, want the two unpublished secrets", tab.Problems)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestCertCacheParsesOnceAndPrunes(t *testing.T) {
	c, k := selfSigned(t, "a.com")
	var cache certCache
	used := map[[32]byte]bool{}
	first, err := cache.get(c, k, used)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := cache.get(c, k, used)
	if first != again {
		t.Error("the same pair was parsed twice")
	}
	cache.prune(map[[32]byte]bool{})
	if len(cache.parsed) != 0 {
		t.Error("an unused pair survived prune")
	}
	if _, err := cache.get([]byte("junk"), k, used); err == nil {
		t.Error("a junk certificate parsed")
	}
	var none certSet = newCertSet()
	if _, err := none.choose("a.com"); err == nil || errors.Is(err, nil) {
		t.Error("no certificate at all: want a handshake error")
	}
}
