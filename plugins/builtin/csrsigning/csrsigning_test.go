package csrsigning

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/keelson/keelson/plugins/builtin/internal/csrrules"
)

var now = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)

// testCA is an Ed25519 signer CA valid for two years from now, as core/pki
// derives one.
func testCA(t *testing.T) Config {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signer"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		CACertPEM:              string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CAKeyPEM:               string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		ClusterSigningDuration: metav1.Duration{Duration: DefaultSigningDuration},
	}
}

func request(t *testing.T, subject pkix.Name, dns []string, ips []net.IP) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns, IPAddresses: ips}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func csr(name, signer string, req []byte, usages ...certificatesv1.KeyUsage) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certificatesv1.CertificateSigningRequestSpec{Request: req, SignerName: signer, Usages: usages, Username: "alice"},
		Status: certificatesv1.CertificateSigningRequestStatus{Conditions: []certificatesv1.CertificateSigningRequestCondition{
			{Type: certificatesv1.CertificateApproved, Status: "True", Reason: "KubectlApprove"},
		}},
	}
}

func TestSign(t *testing.T) {
	node := pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes"}}
	client, serving, sig := certificatesv1.UsageClientAuth, certificatesv1.UsageServerAuth, certificatesv1.UsageDigitalSignature
	tests := []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		wantErr string
	}{
		{"api client", csr("c", csrrules.APIServerClient, request(t, pkix.Name{CommonName: "alice", Organization: []string{"team"}}, nil, nil), client, sig), ""},
		{"api client without client auth", csr("c", csrrules.APIServerClient, request(t, pkix.Name{CommonName: "alice"}, nil, nil), sig), `must include "client auth"`},
		{"api client with server auth", csr("c", csrrules.APIServerClient, request(t, pkix.Name{CommonName: "alice"}, nil, nil), client, serving), `usage "server auth" is not allowed`},
		{"kubelet client", csr("c", csrrules.APIServerClientKubelet, request(t, node, nil, nil), client), ""},
		{"kubelet client with a SAN", csr("c", csrrules.APIServerClientKubelet, request(t, node, []string{"w1"}, nil), client), "no subject alternative names"},
		{"kubelet client not a node", csr("c", csrrules.APIServerClientKubelet, request(t, pkix.Name{CommonName: "alice", Organization: []string{"system:nodes"}}, nil, nil), client), "system:node:NODE-NAME"},
		{"kubelet client extra group", csr("c", csrrules.APIServerClientKubelet, request(t, pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes", "system:masters"}}, nil, nil), client), "exactly [system:nodes]"},
		{"kubelet serving", csr("c", csrrules.KubeletServing, request(t, node, []string{"w1"}, []net.IP{net.ParseIP("10.0.0.5")}), serving, sig), ""},
		{"kubelet serving without names", csr("c", csrrules.KubeletServing, request(t, node, nil, nil), serving), "at least one DNS name or IP"},
		{"legacy unknown", csr("c", csrrules.LegacyUnknown, request(t, pkix.Name{CommonName: "anything"}, []string{"x"}, nil), serving, client), ""},
		{"not a request", csr("c", csrrules.APIServerClient, []byte("garbage"), client), "no PEM CERTIFICATE REQUEST"},
	}
	ca, err := newAuthority(testCA(t), clocktesting.NewFakePassiveClock(now))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ca.sign(tc.csr)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(out)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Errorf("issued certificate does not verify against the signer CA: %v", err)
			}
			req, _ := csrrules.ParseRequest(tc.csr.Spec.Request)
			if cert.Subject.String() != req.Subject.String() || cert.IsCA {
				t.Errorf("subject %s (CA %v), want %s and not a CA", cert.Subject, cert.IsCA, req.Subject)
			}
		})
	}
}

func TestValidity(t *testing.T) {
	cfg := testCA(t)
	cfg.ClusterSigningDuration = metav1.Duration{Duration: 30 * 24 * time.Hour}
	ca, err := newAuthority(cfg, clocktesting.NewFakePassiveClock(now))
	if err != nil {
		t.Fatal(err)
	}
	secs := func(d time.Duration) *int32 { s := int32(d / time.Second); return &s }
	for _, tc := range []struct {
		name   string
		asked  *int32
		expect time.Time
	}{
		{"default duration", nil, now.Add(30 * 24 * time.Hour)},
		{"shorter asked", secs(time.Hour), now.Add(time.Hour)},
		{"longer asked is capped", secs(90 * 24 * time.Hour), now.Add(30 * 24 * time.Hour)},
	} {
		if got := ca.notAfter(now, tc.asked); !got.Equal(tc.expect) {
			t.Errorf("%s: notAfter %s, want %s", tc.name, got, tc.expect)
		}
	}
	ca.duration = 5 * 365 * 24 * time.Hour
	if got := ca.notAfter(now, nil); !got.Equal(ca.cert.NotAfter) {
		t.Errorf("notAfter %s past the CA's %s", got, ca.cert.NotAfter)
	}
}

func TestConfigErrors(t *testing.T) {
	good := testCA(t)
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"no key", func(c *Config) { c.CAKeyPEM = "" }, "caCertPEM and caKeyPEM"},
		{"mismatched key", func(c *Config) { c.CAKeyPEM = testCA(t).CAKeyPEM }, "caCertPEM/caKeyPEM"},
		{"short duration", func(c *Config) { c.ClusterSigningDuration.Duration = time.Minute }, "clusterSigningDuration"},
	} {
		cfg := good
		tc.mutate(&cfg)
		if _, err := newAuthority(cfg, clocktesting.NewFakePassiveClock(now)); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
}

// The controller issues approved CSRs of its signers, fails invalid ones,
// and leaves pending, denied and foreign ones alone.
func TestReconcile(t *testing.T) {
	valid := request(t, pkix.Name{CommonName: "alice"}, nil, nil)
	issued := csr("issued", csrrules.APIServerClient, valid, certificatesv1.UsageClientAuth)
	invalid := csr("invalid", csrrules.APIServerClient, valid, certificatesv1.UsageServerAuth)
	pending := csr("pending", csrrules.APIServerClient, valid, certificatesv1.UsageClientAuth)
	pending.Status.Conditions = nil
	denied := csr("denied", csrrules.APIServerClient, valid, certificatesv1.UsageClientAuth)
	denied.Status.Conditions = append(denied.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{Type: certificatesv1.CertificateDenied, Status: "True"})
	foreign := csr("foreign", "example.com/signer", valid, certificatesv1.UsageClientAuth)

	client := fake.NewClientset(issued, invalid, pending, denied, foreign)
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Certificates().V1().CertificateSigningRequests()
	lister := inf.Lister()
	ctx := context.Background()
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	ca, err := newAuthority(testCA(t), clocktesting.NewFakePassiveClock(now))
	if err != nil {
		t.Fatal(err)
	}
	c := &controller{client: client, csrs: lister, ca: ca,
		events: record.NewFakeRecorder(10), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, name := range []string{"issued", "invalid", "pending", "denied", "foreign"} {
		if _, err := c.reconcile(ctx, name); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	get := func(name string) *certificatesv1.CertificateSigningRequest {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := get("issued"); len(got.Status.Certificate) == 0 {
		t.Error("approved valid CSR got no certificate")
	}
	if got := get("invalid"); csrrules.StateOf(got) != csrrules.Failed || len(got.Status.Certificate) > 0 {
		t.Errorf("invalid CSR: state %v, conditions %+v", csrrules.StateOf(got), got.Status.Conditions)
	}
	for _, name := range []string{"pending", "denied", "foreign"} {
		if got := get(name); len(got.Status.Certificate) > 0 || csrrules.StateOf(got) == csrrules.Failed {
			t.Errorf("%s CSR was acted on: %+v", name, got.Status)
		}
	}
}
