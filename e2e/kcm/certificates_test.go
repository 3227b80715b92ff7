package kcm

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/e2e/harness"
)

// newRequest returns a PEM CSR for subject and its PEM private key.
func newRequest(t *testing.T, subject pkix.Name) (csrPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

const csrYAML = `apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: %s
spec:
  request: %s
  signerName: %s
  expirationSeconds: 3600
  usages: [%s]
`

func waitCertificate(t *testing.T, srv *harness.Server, name string) []byte {
	t.Helper()
	var cert []byte
	harness.Eventually(t, waitTimeout, "certificate of CSR "+name, func() (bool, string) {
		r := srv.Kubectl(t, "get", "csr", name, "-o", "jsonpath={.status.certificate}")
		if r.ExitCode != 0 || r.Stdout == "" {
			return false, r.String()
		}
		b, err := base64.StdEncoding.DecodeString(r.Stdout)
		cert = b
		return err == nil, fmt.Sprint(err)
	})
	return cert
}

// whoAmI authenticates with the certificate and asks the API server who
// that is.
func whoAmI(t *testing.T, srv *harness.Server, certPEM, keyPEM []byte) authenticationv1.UserInfo {
	t.Helper()
	admin := srv.RESTConfig(t)
	cfg := &rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAData: admin.CAData, CAFile: admin.CAFile, CertData: certPEM, KeyData: keyPEM}}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := kube.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the issued certificate does not authenticate: %v", err)
	}
	return r.Status.UserInfo
}

func testCertificates(t *testing.T, srv *harness.Server) {
	// A person's client certificate, approved with kubectl.
	csrPEM, keyPEM := newRequest(t, pkix.Name{CommonName: "alice", Organization: []string{"team"}})
	in := fmt.Sprintf(csrYAML, "alice", base64.StdEncoding.EncodeToString(csrPEM), certificatesv1.KubeAPIServerClientSignerName, "client auth")
	if r := srv.KubectlIn(t, in, "create", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating CSR alice:\n%s", r)
	}
	if r := srv.Kubectl(t, "get", "csr", "alice", "-o", "jsonpath={.status.certificate}"); r.Stdout != "" {
		t.Fatal("a pending CSR got a certificate before approval")
	}
	srv.MustKubectl(t, "certificate", "approve", "alice")
	cert := waitCertificate(t, srv, "alice")
	if u := whoAmI(t, srv, cert, keyPEM); u.Username != "alice" || !slices.Contains(u.Groups, "team") {
		t.Errorf("the certificate authenticates as %+v, want alice in team", u)
	}
	block, _ := pem.Decode(cert)
	if c, err := x509.ParseCertificate(block.Bytes); err != nil || c.NotAfter.Sub(c.NotBefore) > 3600e9+5*60e9 {
		t.Errorf("certificate validity ignores expirationSeconds: %v", err)
	}

	// One that breaks its signer's rules fails with the reason.
	in = fmt.Sprintf(csrYAML, "bad", base64.StdEncoding.EncodeToString(csrPEM), certificatesv1.KubeAPIServerClientSignerName, "server auth")
	if r := srv.KubectlIn(t, in, "create", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating CSR bad:\n%s", r)
	}
	srv.MustKubectl(t, "certificate", "approve", "bad")
	harness.Eventually(t, waitTimeout, "CSR bad failed", func() (bool, string) {
		r := srv.Kubectl(t, "get", "csr", "bad", "-o", `jsonpath={.status.conditions[?(@.type=="Failed")].message}`)
		return strings.Contains(r.Stdout, `"server auth" is not allowed`), r.String()
	})

	// A kubelet client certificate asked for by a bootstrapper allowed
	// certificatesigningrequests/nodeclient is approved without a person.
	srv.MustKubectl(t, "create", "clusterrolebinding", "boot-node-bootstrapper", "--clusterrole=system:node-bootstrapper", "--user=bootstrapper")
	srv.MustKubectl(t, "create", "clusterrolebinding", "boot-nodeclient",
		"--clusterrole=system:certificates.k8s.io:certificatesigningrequests:nodeclient", "--user=bootstrapper")
	nodePEM, nodeKey := newRequest(t, pkix.Name{CommonName: "system:node:w9", Organization: []string{"system:nodes"}})
	in = fmt.Sprintf(csrYAML, "node-w9", base64.StdEncoding.EncodeToString(nodePEM), certificatesv1.KubeAPIServerClientKubeletSignerName, "client auth, digital signature")
	if r := srv.KubectlIn(t, in, "create", "--as=bootstrapper", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating CSR node-w9 as bootstrapper:\n%s", r)
	}
	cert = waitCertificate(t, srv, "node-w9")
	if r := srv.MustKubectl(t, "get", "csr", "node-w9", "-o", `jsonpath={.status.conditions[?(@.type=="Approved")].reason}`); r != "AutoApproved" {
		t.Errorf("node-w9 approved with reason %q, want AutoApproved", r)
	}
	if u := whoAmI(t, srv, cert, nodeKey); u.Username != "system:node:w9" {
		t.Errorf("kubelet client certificate authenticates as %+v", u)
	}
	// The same request from someone without the grant waits for a person.
	otherPEM, _ := newRequest(t, pkix.Name{CommonName: "system:node:w8", Organization: []string{"system:nodes"}})
	srv.MustKubectl(t, "create", "clusterrolebinding", "mallory-bootstrapper", "--clusterrole=system:node-bootstrapper", "--user=mallory")
	in = fmt.Sprintf(csrYAML, "node-w8", base64.StdEncoding.EncodeToString(otherPEM), certificatesv1.KubeAPIServerClientKubeletSignerName, "client auth")
	if r := srv.KubectlIn(t, in, "create", "--as=mallory", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating CSR node-w8 as mallory:\n%s", r)
	}
	// A negative cannot be waited for: once a request created after it has
	// been approved and signed (one worker, handled in order), node-w8
	// must still be undecided.
	in = fmt.Sprintf(csrYAML, "node-w7", base64.StdEncoding.EncodeToString(nodePEM), certificatesv1.KubeAPIServerClientKubeletSignerName, "client auth")
	if r := srv.KubectlIn(t, in, "create", "--as=bootstrapper", "-f", "-"); r.ExitCode != 0 {
		t.Fatalf("creating CSR node-w7:\n%s", r)
	}
	waitCertificate(t, srv, "node-w7")
	if r := srv.MustKubectl(t, "get", "csr", "node-w8", "-o", "jsonpath={.status.conditions}"); r != "" {
		t.Errorf("mallory's kubelet client CSR was decided without a person: %s", r)
	}
}
