package csrcleaner

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func certPEM(t *testing.T, notAfter time.Time) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: notAfter.Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func csr(created time.Duration, conds ...certificatesv1.CertificateSigningRequestCondition) *certificatesv1.CertificateSigningRequest {
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "c", UID: "u", CreationTimestamp: metav1.NewTime(now.Add(-created))},
		Status:     certificatesv1.CertificateSigningRequestStatus{Conditions: conds},
	}
}

func cond(t certificatesv1.RequestConditionType, ago time.Duration) certificatesv1.CertificateSigningRequestCondition {
	return certificatesv1.CertificateSigningRequestCondition{Type: t, LastUpdateTime: metav1.NewTime(now.Add(-ago))}
}

func TestReconcile(t *testing.T) {
	issued := func(approvedAgo time.Duration, notAfter time.Time) *certificatesv1.CertificateSigningRequest {
		c := csr(2*time.Hour, cond(certificatesv1.CertificateApproved, approvedAgo))
		c.Status.Certificate = certPEM(t, notAfter)
		return c
	}
	tests := []struct {
		name    string
		csr     *certificatesv1.CertificateSigningRequest
		deleted bool
		requeue time.Duration
	}{
		{"pending for a day", csr(25 * time.Hour), true, 0},
		{"pending for an hour", csr(time.Hour), false, 23 * time.Hour},
		{"denied over an hour ago", csr(2*time.Hour, cond(certificatesv1.CertificateDenied, 61*time.Minute)), true, 0},
		{"denied just now", csr(2*time.Hour, cond(certificatesv1.CertificateDenied, 0)), false, time.Hour},
		{"failed over an hour ago", csr(2*time.Hour, cond(certificatesv1.CertificateFailed, 2*time.Hour)), true, 0},
		{"issued over an hour ago", issued(61*time.Minute, now.Add(time.Hour*24)), true, 0},
		{"issued, certificate expired", issued(time.Minute, now.Add(-time.Second)), true, 0},
		{"issued, expires before the hour", issued(0, now.Add(10*time.Minute)), false, 10 * time.Minute},
		{"approved, not yet issued", csr(48*time.Hour, cond(certificatesv1.CertificateApproved, 30*time.Hour)), false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			_ = idx.Add(tc.csr)
			client := fake.NewClientset(tc.csr)
			c := &controller{client: client, csrs: certlisters.NewCertificateSigningRequestLister(idx),
				clock: clocktesting.NewFakeClock(now), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			res, err := c.reconcile(context.Background(), "c")
			if err != nil {
				t.Fatal(err)
			}
			_, getErr := client.CertificatesV1().CertificateSigningRequests().Get(context.Background(), "c", metav1.GetOptions{})
			if deleted := getErr != nil; deleted != tc.deleted {
				t.Errorf("deleted %v, want %v", deleted, tc.deleted)
			}
			if res.RequeueAfter.Round(time.Second) != tc.requeue {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.requeue)
			}
		})
	}
}

func TestTransformDropsTheRequest(t *testing.T) {
	c := csr(0)
	c.Spec.Request = []byte("PEM")
	out, _ := transform(c)
	if got := out.(*certificatesv1.CertificateSigningRequest); got.Spec.Request != nil || got.Name != "c" {
		t.Errorf("transform kept %+v", got)
	}
}

func TestPodCertificateRequestsLastFifteenMinutes(t *testing.T) {
	for _, tc := range []struct {
		age     time.Duration
		deleted bool
		requeue time.Duration
	}{
		{16 * time.Minute, true, 0},
		{15 * time.Minute, true, 0},
		{time.Minute, false, 14 * time.Minute},
	} {
		t.Run(tc.age.String(), func(t *testing.T) {
			pcr := &certificatesv1.PodCertificateRequest{ObjectMeta: metav1.ObjectMeta{
				Name: "r", Namespace: "ns", UID: "u", CreationTimestamp: metav1.NewTime(now.Add(-tc.age))}}
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
			_ = idx.Add(pcr)
			client := fake.NewClientset(pcr)
			c := &controller{client: client, pcrs: certlisters.NewPodCertificateRequestLister(idx),
				clock: clocktesting.NewFakeClock(now), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			res, err := c.reconcilePCR(context.Background(), "ns/r")
			if err != nil {
				t.Fatal(err)
			}
			_, getErr := client.CertificatesV1().PodCertificateRequests("ns").Get(context.Background(), "r", metav1.GetOptions{})
			if deleted := getErr != nil; deleted != tc.deleted {
				t.Errorf("deleted %v, want %v", deleted, tc.deleted)
			}
			if res.RequeueAfter.Round(time.Second) != tc.requeue {
				t.Errorf("requeue after %s, want %s", res.RequeueAfter, tc.requeue)
			}
		})
	}
	// The cache keeps a request's identity and age only.
	out, _ := transform(&certificatesv1.PodCertificateRequest{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"},
		Spec: certificatesv1.PodCertificateRequestSpec{SignerName: "example.com/s", PodName: "p"}})
	if got := out.(*certificatesv1.PodCertificateRequest); got.Spec.PodName != "" || got.Name != "r" {
		t.Errorf("transform kept %+v", got)
	}
}
