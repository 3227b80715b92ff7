package agent

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testPodCertificateVolume: the agent generates a key, asks for a
// certificate with a PodCertificateRequest for the pod, and once the test
// (acting as the signer) issues it, the pod starts with the key, the chain
// and the credential bundle in its projected volume.
func (c *cluster) testPodCertificateVolume(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "podcert")
	signer := "example.com/e2e-podcert"
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: certified
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  volumes:
  - name: tls
    projected:
      sources:
      - podCertificate:
          signerName: `+signer+`
          keyType: ED25519
          maxExpirationSeconds: 3600
          credentialBundlePath: bundle.pem
          keyPath: key.pem
          certificateChainPath: chain.pem
          userAnnotations: {e2e/purpose: test}
  containers:
  - name: reader
    image: `+c.busybox+`
    command: ['sh', '-c', 'cat /tls/key.pem /tls/chain.pem; echo SEPARATOR; cat /tls/bundle.pem']
    volumeMounts: [{name: tls, mountPath: /tls}]
`)
	caPub, caKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e-pod-ca"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caPub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	var issuedTo crypto.PublicKey
	harness.Eventually(t, 2*time.Minute, "the agent requested a certificate for the pod, and it was issued", func() (bool, string) {
		list, err := c.client.CertificatesV1().PodCertificateRequests(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			return false, "no PodCertificateRequest yet"
		}
		pcr := list.Items[0]
		s := pcr.Spec
		if s.SignerName != signer || s.PodName != "certified" || s.ServiceAccountName != "default" || s.NodeName == "" || s.NodeUID == "" ||
			s.UnverifiedUserAnnotations["e2e/purpose"] != "test" {
			t.Fatalf("request spec %+v", s)
		}
		csr, err := x509.ParseCertificateRequest(s.StubPKCS10Request)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().Truncate(time.Second)
		leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: s.PodName}, NotBefore: now, NotAfter: now.Add(time.Hour)}
		ca, _ := x509.ParseCertificate(caDER)
		leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, csr.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		pcr.Status = certificatesv1.PodCertificateRequestStatus{
			CertificateChain: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})) + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
			NotBefore:        &metav1.Time{Time: now}, NotAfter: &metav1.Time{Time: now.Add(time.Hour)}, BeginRefreshAt: &metav1.Time{Time: now.Add(30 * time.Minute)},
			Conditions: []metav1.Condition{{Type: certificatesv1.PodCertificateRequestConditionTypeIssued, Status: metav1.ConditionTrue,
				Reason: "Issued", Message: "issued by the e2e test", LastTransitionTime: metav1.Now()}},
		}
		if _, err := c.client.CertificatesV1().PodCertificateRequests(ns).UpdateStatus(ctx, &pcr, metav1.UpdateOptions{}); err != nil {
			return false, err.Error()
		}
		issuedTo = csr.PublicKey
		return true, ""
	})
	c.waitPod(t, ns, "certified", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	out := c.server.Kubectl(t, "logs", "-n", ns, "certified").Stdout
	files, bundle, ok := strings.Cut(out, "SEPARATOR\n")
	if !ok || files != bundle {
		t.Fatalf("bundle.pem is not key.pem followed by chain.pem:\n%s", out)
	}
	var blocks []*pem.Block
	for rest := []byte(files); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) != 3 || blocks[0].Type != "PRIVATE KEY" {
		t.Fatalf("want a private key and two certificates, got %d blocks:\n%s", len(blocks), out)
	}
	key, err := x509.ParsePKCS8PrivateKey(blocks[0].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(blocks[1].Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
	if !pub.Equal(issuedTo) || !pub.Equal(leaf.PublicKey) {
		t.Error("the pod's key is not the one the certificate was issued to")
	}
}
