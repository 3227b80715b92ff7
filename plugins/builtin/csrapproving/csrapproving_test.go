package csrapproving

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keelson/keelson/plugins/builtin/internal/csrrules"
)

func request(t *testing.T, subject pkix.Name, dns ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestApproval(t *testing.T) {
	node := pkix.Name{CommonName: "system:node:w1", Organization: []string{"system:nodes"}}
	client := []certificatesv1.KeyUsage{certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature}
	// Who may create which subresource, as RBAC would answer.
	grants := map[string]string{"system:node:w1": "selfnodeclient", "bootstrapper": "nodeclient"}
	tests := []struct {
		name, user, signer string
		req                []byte
		usages             []certificatesv1.KeyUsage
		wantApproved       bool
		wantMessage        string
	}{
		{"node renews itself", "system:node:w1", csrrules.APIServerClientKubelet, request(t, node), client, true, "self kubelet client"},
		{"bootstrapper asks for a node", "bootstrapper", csrrules.APIServerClientKubelet, request(t, node), client, true, "Auto approving kubelet client"},
		{"another node's identity", "system:node:w2", csrrules.APIServerClientKubelet, request(t, node), client, false, ""},
		{"no grant", "alice", csrrules.APIServerClientKubelet, request(t, node), client, false, ""},
		{"not a node request", "bootstrapper", csrrules.APIServerClientKubelet, request(t, node, "w1"), client, false, ""},
		{"serving is never auto-approved", "system:node:w1", csrrules.KubeletServing, request(t, node, "w1"),
			[]certificatesv1.KeyUsage{certificatesv1.UsageServerAuth}, false, ""},
		{"api client is never auto-approved", "bootstrapper", csrrules.APIServerClient, request(t, node), client, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := &certificatesv1.CertificateSigningRequest{
				ObjectMeta: metav1.ObjectMeta{Name: "r"},
				Spec: certificatesv1.CertificateSigningRequestSpec{Request: tc.req, SignerName: tc.signer, Usages: tc.usages,
					Username: tc.user, Groups: []string{"system:authenticated"}},
			}
			cs := fake.NewClientset(obj)
			cs.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				sar := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SubjectAccessReview)
				sar.Status.Allowed = grants[sar.Spec.User] == sar.Spec.ResourceAttributes.Subresource &&
					sar.Spec.ResourceAttributes.Verb == "create" && sar.Spec.ResourceAttributes.Resource == "certificatesigningrequests"
				return true, sar, nil
			})
			f := informers.NewSharedInformerFactory(cs, 0)
			lister := f.Certificates().V1().CertificateSigningRequests().Lister()
			ctx := context.Background()
			f.Start(ctx.Done())
			f.WaitForCacheSync(ctx.Done())
			c := &controller{client: cs, csrs: lister, logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if _, err := c.reconcile(ctx, "r"); err != nil {
				t.Fatal(err)
			}
			got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, "r", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			approved := csrrules.StateOf(got) == csrrules.Approved
			if approved != tc.wantApproved {
				t.Fatalf("approved = %v, want %v (%+v)", approved, tc.wantApproved, got.Status.Conditions)
			}
			if approved && (got.Status.Conditions[0].Reason != "AutoApproved" || !contains(got.Status.Conditions[0].Message, tc.wantMessage)) {
				t.Errorf("condition %+v", got.Status.Conditions[0])
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
