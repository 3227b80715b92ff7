package serviceaccount

import (
	"context"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	"k8s.io/client-go/tools/cache"
)

func bundle(name, signer, pem string) *certificatesv1.ClusterTrustBundle {
	return &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: pem}}
}

func TestServingTrustBundlePublished(t *testing.T) {
	const ca = "-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n"
	name := BundleName(ServingSigner, []byte(ca))
	if !strings.HasPrefix(name, "kubernetes.io:kube-apiserver-serving:") || len(name) != len("kubernetes.io:kube-apiserver-serving:")+24 {
		t.Fatalf("bundle name %q: want the signer with ':' and 12 bytes of hash in hex", name)
	}
	for _, tc := range []struct {
		name     string
		existing []*certificatesv1.ClusterTrustBundle
	}{
		{"none yet", nil},
		{"an old CA's bundle is replaced", []*certificatesv1.ClusterTrustBundle{bundle(BundleName(ServingSigner, []byte("old")), ServingSigner, "old")}},
		{"the bundle was edited", []*certificatesv1.ClusterTrustBundle{bundle(name, ServingSigner, "tampered")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := bundle("example.com:mine:abc", "example.com/mine", "theirs")
			client := fake.NewClientset(other)
			idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
			for _, b := range tc.existing {
				_ = idx.Add(b)
				_ = client.Tracker().Add(b)
			}
			tb := &trustBundles{client: client, bundles: certlisters.NewClusterTrustBundleLister(idx), ca: ca}
			if _, err := tb.reconcile(context.Background(), ServingSigner); err != nil {
				t.Fatal(err)
			}
			list, err := client.CertificatesV1().ClusterTrustBundles().List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, b := range list.Items {
				got[b.Name] = b.Spec.TrustBundle
			}
			want := map[string]string{name: ca, other.Name: "theirs"}
			if len(got) != len(want) || got[name] != ca || got[other.Name] != "theirs" {
				t.Errorf("bundles %v, want %v (another signer's bundle untouched)", got, want)
			}
		})
	}
}
