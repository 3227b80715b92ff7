package volumes

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"sort"

	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// trustBundlePayload is the file of a clusterTrustBundle projection: the
// certificates of one ClusterTrustBundle named by name, or of every bundle
// of signerName whose labels match labelSelector (a nil selector matches
// none, an empty one all), de-duplicated. A non-optional source that
// matches no bundle is an error, which keeps the pod from starting; an
// optional one yields an empty file.
func (m *Manager) trustBundlePayload(ctx context.Context, s *v1.ClusterTrustBundleProjection) ([]byte, error) {
	optional := s.Optional != nil && *s.Optional
	switch {
	case s.Name != nil && s.SignerName != nil:
		return nil, fmt.Errorf("clusterTrustBundle projection %s sets both name and signerName; set exactly one", s.Path)
	case s.Name != nil:
		ctb, err := m.client.CertificatesV1().ClusterTrustBundles().Get(ctx, *s.Name, metav1.GetOptions{})
		if notFound(err) && optional {
			return []byte{}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("clusterTrustBundle %s: %w", *s.Name, err)
		}
		return m.trustAnchors([]certificatesv1.ClusterTrustBundle{*ctb}), nil
	case s.SignerName != nil:
		matched, err := m.bundlesOfSigner(ctx, *s.SignerName, s.LabelSelector)
		if err != nil {
			return nil, err
		}
		if len(matched) == 0 {
			if optional {
				return []byte{}, nil
			}
			return nil, fmt.Errorf("clusterTrustBundle projection %s: signerName %q and labelSelector %s matched zero ClusterTrustBundles (create one, or set optional: true)",
				s.Path, *s.SignerName, metav1.FormatLabelSelector(s.LabelSelector))
		}
		return m.trustAnchors(matched), nil
	default:
		return nil, fmt.Errorf("clusterTrustBundle projection %s sets neither name nor signerName; set one", s.Path)
	}
}

// bundlesOfSigner lists the ClusterTrustBundles of signer that selector
// matches. A nil selector matches nothing, without asking the API server.
func (m *Manager) bundlesOfSigner(ctx context.Context, signer string, selector *metav1.LabelSelector) ([]certificatesv1.ClusterTrustBundle, error) {
	if selector == nil {
		return nil, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, fmt.Errorf("clusterTrustBundle labelSelector: %w", err)
	}
	list, err := m.client.CertificatesV1().ClusterTrustBundles().List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterTrustBundles of signer %s: %w", signer, err)
	}
	var out []certificatesv1.ClusterTrustBundle
	for _, ctb := range list.Items {
		if ctb.Spec.SignerName == signer {
			out = append(out, ctb)
		}
	}
	return out, nil
}

// trustAnchors joins the PEM blocks of bundles, each distinct one once,
// re-encoded as CERTIFICATE blocks without headers. Like kubelet, the
// order is shuffled so that no consumer comes to rely on it; the shuffle
// is keyed by the Manager's seed, so it is stable while the agent runs
// (an unchanged set of bundles never rewrites the volume) and changes
// when it restarts.
func (m *Manager) trustAnchors(bundles []certificatesv1.ClusterTrustBundle) []byte {
	seen := map[string]bool{}
	var ders []string
	for _, ctb := range bundles {
		rest := []byte(ctb.Spec.TrustBundle)
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if !seen[string(b.Bytes)] {
				seen[string(b.Bytes)] = true
				ders = append(ders, string(b.Bytes))
			}
		}
	}
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], m.anchorSeed)
	type anchor struct{ key, der string }
	anchors := make([]anchor, len(ders))
	for i, der := range ders {
		h := sha256.Sum256(append(seed[:], der...))
		anchors[i] = anchor{key: string(h[:]) + der, der: der}
	}
	sort.Slice(anchors, func(i, j int) bool { return anchors[i].key < anchors[j].key })
	out := []byte{}
	for _, a := range anchors {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte(a.der)})...)
	}
	return out
}
