package volumes

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

// signer is a test signer: it issues a PodCertificateRequest with a leaf
// for the stub request's key, signed by its own CA.
type signer struct {
	key    ed25519.PrivateKey
	ca     *x509.Certificate
	serial int64
}

func newSigner(t *testing.T) *signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signer-ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return &signer{key: priv, ca: ca, serial: 1}
}

func (s *signer) issue(t *testing.T, client *fake.Clientset, ns, name string, refreshAt time.Time) {
	t.Helper()
	ctx := context.Background()
	pcr, err := client.CertificatesV1().PodCertificateRequests(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(pcr.Spec.StubPKCS10Request)
	if err != nil {
		t.Fatal(err)
	}
	s.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(s.serial), Subject: pkix.Name{CommonName: pcr.Spec.PodName},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, csr.PublicKey, s.key)
	if err != nil {
		t.Fatal(err)
	}
	// Headers and text between blocks are not the agent's to pass on.
	pcr.Status.CertificateChain = "leaf:\n" + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Headers: map[string]string{"X": "y"}, Bytes: der})) +
		string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ca.Raw}))
	pcr.Status.BeginRefreshAt = &metav1.Time{Time: refreshAt}
	pcr.Status.Conditions = []metav1.Condition{{Type: certificatesv1.PodCertificateRequestConditionTypeIssued, Status: metav1.ConditionTrue, Reason: "Issued"}}
	if _, err := client.CertificatesV1().PodCertificateRequests(ns).UpdateStatus(ctx, pcr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func podCertClient(t *testing.T) (*fake.Clientset, *[]string) {
	client := fake.NewClientset(
		&v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns", UID: "sa-uid"}},
		&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a", UID: "node-uid"}},
	)
	var names []string
	client.PrependReactor("create", "podcertificaterequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		pcr := a.(k8stesting.CreateAction).GetObject().(*certificatesv1.PodCertificateRequest)
		if pcr.GenerateName == "" || pcr.Name != "" {
			t.Errorf("request named %q, generateName %q: want a generated name", pcr.Name, pcr.GenerateName)
		}
		pcr.Name = fmt.Sprintf("%s%d", pcr.GenerateName, len(names))
		names = append(names, pcr.Name)
		return false, nil, nil // the tracker stores it under that name
	})
	return client, &names
}

func certPod(keyType string) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "pod-uid"},
		Spec: v1.PodSpec{ServiceAccountName: "app", Volumes: []v1.Volume{{Name: "tls", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
			Sources: []v1.VolumeProjection{{PodCertificate: &v1.PodCertificateProjection{
				SignerName: "example.com/spiffe", KeyType: keyType, MaxExpirationSeconds: ptr.To[int32](3600),
				CredentialBundlePath: "bundle.pem", KeyPath: "key.pem", CertificateChainPath: "chain.pem",
				UserAnnotations: map[string]string{"spiffe/path": "/custom"},
			}}},
		}}}}},
	}
}

func TestPodCertificateRequestAndRefresh(t *testing.T) {
	client, names := podCertClient(t)
	clock := clockwork.NewFakeClock()
	m := New(Options{Client: client, Clock: clock})
	pod := certPod("ECDSAP256")
	env := Env{NodeName: "node-a"}
	payload := func() (map[string]File, error) {
		return m.projectedPayload(context.Background(), pod, "tls", pod.Spec.Volumes[0].Projected, env)
	}
	if _, err := payload(); err == nil || !strings.Contains(err.Error(), "waiting for signer example.com/spiffe") {
		t.Fatalf("before issuance: %v, want an error saying the pod waits for the signer", err)
	}
	pcr, err := client.CertificatesV1().PodCertificateRequests("ns").Get(context.Background(), (*names)[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := pcr.Spec
	if s.SignerName != "example.com/spiffe" || s.PodName != "web" || s.PodUID != "pod-uid" || s.ServiceAccountName != "app" || s.ServiceAccountUID != "sa-uid" ||
		s.NodeName != "node-a" || s.NodeUID != "node-uid" || *s.MaxExpirationSeconds != 3600 || s.UnverifiedUserAnnotations["spiffe/path"] != "/custom" {
		t.Errorf("request spec %+v", s)
	}
	if len(pcr.OwnerReferences) != 1 || pcr.OwnerReferences[0].UID != "pod-uid" || pcr.OwnerReferences[0].Kind != "Pod" {
		t.Errorf("request not owned by the pod: %+v", pcr.OwnerReferences)
	}
	csr, err := x509.ParseCertificateRequest(s.StubPKCS10Request)
	if err != nil || csr.CheckSignature() != nil {
		t.Fatalf("stub request unusable: %v", err)
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("keyType ECDSAP256 gave a %T", csr.PublicKey)
	}
	if _, err := payload(); err == nil || len(*names) != 1 {
		t.Fatalf("still pending: %v, %d requests (want one, still awaited)", err, len(*names))
	}

	sig := newSigner(t)
	sig.issue(t, client, "ns", (*names)[0], clock.Now().Add(30*time.Minute))
	files, err := payload()
	if err != nil {
		t.Fatal(err)
	}
	checkCredential(t, files, csr.PublicKey)
	first := string(files["bundle.pem"].Data)

	clock.Advance(29 * time.Minute)
	if files, err := payload(); err != nil || string(files["bundle.pem"].Data) != first || len(*names) != 1 {
		t.Fatalf("before beginRefreshAt: %v, %d requests; want the same credential, no new request", err, len(*names))
	}
	clock.Advance(2 * time.Minute)
	if files, err := payload(); err != nil || string(files["bundle.pem"].Data) != first || len(*names) != 2 {
		t.Fatalf("after beginRefreshAt: %v, %d requests; want a new request and the old credential served meanwhile", err, len(*names))
	}
	sig.issue(t, client, "ns", (*names)[1], clock.Now().Add(30*time.Minute))
	files, err = payload()
	if err != nil {
		t.Fatal(err)
	}
	if string(files["bundle.pem"].Data) == first {
		t.Error("the refreshed certificate is not served")
	}
	pcr2, _ := client.CertificatesV1().PodCertificateRequests("ns").Get(context.Background(), (*names)[1], metav1.GetOptions{})
	csr2, _ := x509.ParseCertificateRequest(pcr2.Spec.StubPKCS10Request)
	checkCredential(t, files, csr2.PublicKey)

	// Teardown forgets the pod: a new pod with the same volume asks again.
	if err := m.Teardown(context.Background(), "pod-uid", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := payload(); err == nil || len(*names) != 3 {
		t.Errorf("after teardown: %v, %d requests; want a new request", err, len(*names))
	}
}

// checkCredential: the key file is a PKCS#8 key for pub, the chain holds the
// leaf then the CA, headers and stray text dropped, and the bundle is the
// key followed by the chain.
func checkCredential(t *testing.T, files map[string]File, pub crypto.PublicKey) {
	t.Helper()
	kb, _ := pem.Decode(files["key.pem"].Data)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		t.Fatalf("key.pem %q", files["key.pem"].Data)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
		t.Error("key.pem is not the key of the request")
	}
	chain := string(files["chain.pem"].Data)
	if strings.Contains(chain, "leaf:") || strings.Contains(chain, "X: y") || strings.Count(chain, "BEGIN CERTIFICATE") != 2 {
		t.Errorf("chain.pem not cleaned: %q", chain)
	}
	if string(files["bundle.pem"].Data) != string(files["key.pem"].Data)+chain {
		t.Error("bundle.pem is not the key followed by the chain")
	}
	for _, f := range []string{"bundle.pem", "key.pem", "chain.pem"} {
		if files[f].Mode != 0o644 {
			t.Errorf("%s mode %v, want the projected default 0644 (no fsGroup)", f, files[f].Mode)
		}
	}
}

func TestPodCertificateDeniedAndBadKeyType(t *testing.T) {
	client, names := podCertClient(t)
	m := New(Options{Client: client})
	pod := certPod("ED25519")
	pod.Spec.SecurityContext = &v1.PodSecurityContext{FSGroup: ptr.To[int64](2000)}
	env := Env{NodeName: "node-a"}
	payload := func() (map[string]File, error) {
		return m.projectedPayload(context.Background(), pod, "tls", pod.Spec.Volumes[0].Projected, env)
	}
	if _, err := payload(); err == nil {
		t.Fatal("no error before issuance")
	}
	pcr, _ := client.CertificatesV1().PodCertificateRequests("ns").Get(context.Background(), (*names)[0], metav1.GetOptions{})
	pcr.Status.Conditions = []metav1.Condition{{Type: certificatesv1.PodCertificateRequestConditionTypeDenied, Status: metav1.ConditionTrue, Reason: "NotAllowed", Message: "no SPIFFE ID for this pod"}}
	if _, err := client.CertificatesV1().PodCertificateRequests("ns").UpdateStatus(context.Background(), pcr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := payload(); err == nil || !strings.Contains(err.Error(), "Denied") || !strings.Contains(err.Error(), "no SPIFFE ID for this pod") {
		t.Errorf("denied request: %v, want the signer's reason", err)
	}
	// The next sync asks again.
	if _, err := payload(); err == nil || len(*names) != 2 {
		t.Errorf("after a denial: %v, %d requests; want a new request", err, len(*names))
	}
	sig := newSigner(t)
	sig.issue(t, client, "ns", (*names)[1], time.Now().Add(time.Hour))
	files, err := payload()
	if err != nil {
		t.Fatal(err)
	}
	if files["key.pem"].Mode != 0o600 {
		t.Errorf("with an fsGroup the key is %v, want 0600", files["key.pem"].Mode)
	}

	bad := certPod("DSA1024")
	bad.UID = "other"
	if _, err := m.projectedPayload(context.Background(), bad, "tls", bad.Spec.Volumes[0].Projected, env); err == nil || !strings.Contains(err.Error(), `keyType "DSA1024"`) {
		t.Errorf("unsupported key type: %v", err)
	}
}
