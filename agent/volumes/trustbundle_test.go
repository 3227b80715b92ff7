package volumes

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func caPEM(t *testing.T, cn string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func ctb(name, signer, bundle string, labels map[string]string) *certificatesv1.ClusterTrustBundle {
	return &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: signer, TrustBundle: bundle}}
}

// pemBlocks splits a trust-anchor file into its PEM blocks, in order.
func pemBlocks(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	for rest := data; len(rest) > 0; {
		b, r := pem.Decode(rest)
		if b == nil {
			t.Fatalf("trailing bytes that are no PEM block: %q", rest)
		}
		out = append(out, string(pem.EncodeToMemory(b)))
		rest = r
	}
	return out
}

func sameSet(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	set := map[string]int{}
	for _, w := range want {
		set[w]++
	}
	for _, g := range got {
		if set[g] == 0 {
			return false
		}
		set[g]--
	}
	return true
}

func TestClusterTrustBundleProjection(t *testing.T) {
	ca := make([]string, 6)
	for i := range ca {
		ca[i] = caPEM(t, "root"+string(rune('0'+i)))
	}
	alive, dead := map[string]string{"alive": "true"}, map[string]string{"alive": "false"}
	client := fake.NewClientset(
		// A bundle named outright, with a certificate repeated inside it.
		ctb("by-name", "", ca[0]+ca[1]+ca[0], nil),
		ctb("one:a", "example.com/one", ca[2], alive),
		ctb("one:b", "example.com/one", ca[3]+ca[2], alive), // ca[2] again, in another bundle
		ctb("one:c", "example.com/one", ca[4], dead),
		ctb("two:a", "example.com/two", ca[5], alive),
	)
	m := New(Options{Client: client, TrustAnchorSeed: 1})
	sel := func(l map[string]string) *metav1.LabelSelector { return &metav1.LabelSelector{MatchLabels: l} }
	cases := []struct {
		name    string
		src     v1.ClusterTrustBundleProjection
		want    []string
		wantErr string
	}{
		{name: "by name, de-duplicated", src: v1.ClusterTrustBundleProjection{Name: ptr.To("by-name")}, want: []string{ca[0], ca[1]}},
		{name: "missing name, optional", src: v1.ClusterTrustBundleProjection{Name: ptr.To("absent"), Optional: ptr.To(true)}, want: nil},
		{name: "missing name", src: v1.ClusterTrustBundleProjection{Name: ptr.To("absent")}, wantErr: "clusterTrustBundle absent"},
		{name: "missing name, optional false", src: v1.ClusterTrustBundleProjection{Name: ptr.To("absent"), Optional: ptr.To(false)}, wantErr: "not found"},
		{name: "signer and labels, joined across bundles", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one"), LabelSelector: sel(alive)}, want: []string{ca[2], ca[3]}},
		{name: "empty selector: every bundle of the signer", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one"), LabelSelector: &metav1.LabelSelector{}}, want: []string{ca[2], ca[3], ca[4]}},
		{name: "other signer's bundles are not picked", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/two"), LabelSelector: &metav1.LabelSelector{}}, want: []string{ca[5]}},
		{name: "nil selector matches nothing, optional", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one"), Optional: ptr.To(true)}, want: nil},
		{name: "nil selector matches nothing", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one")}, wantErr: "matched zero ClusterTrustBundles"},
		{name: "no match, optional", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one"), LabelSelector: sel(map[string]string{"x": "y"}), Optional: ptr.To(true)}, want: nil},
		{name: "no match", src: v1.ClusterTrustBundleProjection{SignerName: ptr.To("example.com/one"), LabelSelector: sel(map[string]string{"alive": "unknown"})}, wantErr: "alive=unknown"},
		{name: "neither name nor signer", src: v1.ClusterTrustBundleProjection{}, wantErr: "neither name nor signerName"},
		{name: "both name and signer", src: v1.ClusterTrustBundleProjection{Name: ptr.To("by-name"), SignerName: ptr.To("example.com/one")}, wantErr: "both name and signerName"},
	}
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			src.Path = "sub/../bundle.pem"
			out, err := m.projectedPayload(context.Background(), pod, "ca", &v1.ProjectedVolumeSource{Sources: []v1.VolumeProjection{{ClusterTrustBundle: &src}}}, Env{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, ok := out["bundle.pem"]
			if !ok || len(out) != 1 {
				t.Fatalf("payload %v, want the one file bundle.pem (an optional source with no match still writes it, empty)", out)
			}
			if f.Mode != 0o644 {
				t.Errorf("mode %v, want the projected default 0644", f.Mode)
			}
			if got := pemBlocks(t, f.Data); !sameSet(got, tc.want) {
				t.Errorf("file holds %d certificates, want %d distinct ones: %q", len(got), len(tc.want), f.Data)
			}
		})
	}
}

// The order of the certificates does not depend on the order of the
// bundles or of the API's list, is stable for one agent, and differs
// between agents (kubelet shuffles it so consumers do not rely on it).
func TestTrustAnchorOrder(t *testing.T) {
	var bundles []certificatesv1.ClusterTrustBundle
	for i := range 8 {
		bundles = append(bundles, *ctb("b"+string(rune('0'+i)), "s", caPEM(t, "r"+string(rune('0'+i))), nil))
	}
	reversed := make([]certificatesv1.ClusterTrustBundle, len(bundles))
	for i := range bundles {
		reversed[len(bundles)-1-i] = bundles[i]
	}
	m := New(Options{TrustAnchorSeed: 7})
	first := string(m.trustAnchors(bundles))
	if again := string(New(Options{TrustAnchorSeed: 7}).trustAnchors(reversed)); again != first {
		t.Error("same seed, bundles in another order: the file changed")
	}
	orders := map[string]bool{}
	for seed := uint64(1); seed <= 5; seed++ {
		orders[string(New(Options{TrustAnchorSeed: seed}).trustAnchors(bundles))] = true
	}
	if len(orders) < 2 {
		t.Error("five seeds gave one order of eight certificates: the order is not shuffled")
	}
}

func TestClusterTrustBundleVolumeRefresh(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("projected volumes are mounted on tmpfs, which needs root")
	}
	first, second := caPEM(t, "first"), caPEM(t, "second")
	client := fake.NewClientset(ctb("anchors", "", first, nil))
	m := New(Options{Client: client})
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "uid-ctb"},
		Spec: v1.PodSpec{Volumes: []v1.Volume{{Name: "ca", VolumeSource: v1.VolumeSource{Projected: &v1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](0o644),
			Sources:     []v1.VolumeProjection{{ClusterTrustBundle: &v1.ClusterTrustBundleProjection{Name: ptr.To("anchors"), Path: "ca.pem"}}},
		}}}}},
	}
	podDir := t.TempDir()
	t.Cleanup(func() {
		if err := m.Teardown(context.Background(), string(pod.UID), podDir); err != nil {
			t.Error(err)
		}
	})
	vols, err := m.Setup(context.Background(), pod, podDir, Env{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(vols["ca"].Path, "ca.pem")
	if got := read(t, file); got != first {
		t.Fatalf("file %q, want the bundle's certificate", got)
	}
	if !vols["ca"].ReadOnly {
		t.Error("a projected volume must be read-only")
	}
	if _, err := client.CertificatesV1().ClusterTrustBundles().Update(context.Background(), ctb("anchors", "", second, nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setup(context.Background(), pod, podDir, Env{}); err != nil {
		t.Fatal(err)
	}
	if got := read(t, file); got != second {
		t.Errorf("after the bundle changed, file %q, want the new certificate", got)
	}
}
