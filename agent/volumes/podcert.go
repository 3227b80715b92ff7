package volumes

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path"
	"strconv"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podCert is one podCertificate source's credential: the key and chain
// being served, when to replace them, and the request in flight for the
// next ones.
type podCert struct {
	key, chain []byte
	refreshAt  time.Time
	// pending names the PodCertificateRequest waiting for a signer;
	// pendingKey is the private key it was made for.
	pending    string
	pendingKey []byte
}

// podCertKey names a podCertificate source: the pod UID first, so that
// Teardown forgets the pod's credentials with its tokens.
func podCertKey(pod *v1.Pod, volume string, index int) string {
	return string(pod.UID) + "/" + volume + "/" + strconv.Itoa(index)
}

// podCertificate returns the private key (PKCS#8 PEM) and certificate chain
// for a podCertificate source. The first call generates a key and creates a
// PodCertificateRequest for it; until a signer issues it, the source fails
// (so the pod waits, as with kubelet). Once the served certificate reaches
// its beginRefreshAt, a new request is made while the old credential keeps
// being served until the new one is issued.
func (m *Manager) podCertificate(ctx context.Context, pod *v1.Pod, key string, src *v1.PodCertificateProjection, env Env) ([]byte, []byte, error) {
	m.mu.Lock()
	st := m.podCerts[key] // a copy: only a complete step is stored back
	m.mu.Unlock()
	if st.pending != "" {
		if err := m.collectPodCertificate(ctx, pod.Namespace, &st); err != nil {
			m.storePodCert(key, st)
			if st.chain == nil {
				return nil, nil, err
			}
			m.log.Warn("pod certificate refresh failed; serving the current one", "pod", pod.Namespace+"/"+pod.Name, "err", err)
		}
	}
	if st.pending == "" && (st.chain == nil || !m.clock.Now().Before(st.refreshAt)) {
		name, keyPEM, err := m.requestPodCertificate(ctx, pod, src, env)
		if err != nil {
			return nil, nil, err
		}
		st.pending, st.pendingKey = name, keyPEM
	}
	m.storePodCert(key, st)
	if st.chain == nil {
		return nil, nil, fmt.Errorf("podCertificate: waiting for signer %s to issue PodCertificateRequest %s/%s", src.SignerName, pod.Namespace, st.pending)
	}
	return st.key, st.chain, nil
}

func (m *Manager) storePodCert(key string, st podCert) {
	m.mu.Lock()
	m.podCerts[key] = st
	m.mu.Unlock()
}

// collectPodCertificate reads the pending request: issued, its chain
// becomes the served credential; denied or failed, the request is dropped
// (the next sync makes a new one) and the signer's reason returned; still
// pending, an error saying so.
func (m *Manager) collectPodCertificate(ctx context.Context, ns string, st *podCert) error {
	pcr, err := m.client.CertificatesV1().PodCertificateRequests(ns).Get(ctx, st.pending, metav1.GetOptions{})
	if notFound(err) {
		name := st.pending
		st.pending, st.pendingKey = "", nil
		return fmt.Errorf("PodCertificateRequest %s/%s disappeared before it was issued; a new one will be made", ns, name)
	}
	if err != nil {
		return fmt.Errorf("PodCertificateRequest %s/%s: %w", ns, st.pending, err)
	}
	for _, t := range []string{certificatesv1.PodCertificateRequestConditionTypeDenied, certificatesv1.PodCertificateRequestConditionTypeFailed} {
		if c := meta.FindStatusCondition(pcr.Status.Conditions, t); c != nil && c.Status == metav1.ConditionTrue {
			st.pending, st.pendingKey = "", nil
			return fmt.Errorf("PodCertificateRequest %s/%s %s by signer %s: %s: %s", ns, pcr.Name, t, pcr.Spec.SignerName, c.Reason, c.Message)
		}
	}
	issued := meta.FindStatusCondition(pcr.Status.Conditions, certificatesv1.PodCertificateRequestConditionTypeIssued)
	if issued == nil || issued.Status != metav1.ConditionTrue || pcr.Status.CertificateChain == "" {
		return fmt.Errorf("podCertificate: waiting for signer %s to issue PodCertificateRequest %s/%s", pcr.Spec.SignerName, ns, pcr.Name)
	}
	chain := certificateBlocks([]byte(pcr.Status.CertificateChain))
	if len(chain) == 0 {
		st.pending, st.pendingKey = "", nil
		return fmt.Errorf("PodCertificateRequest %s/%s was issued with no PEM certificate in status.certificateChain", ns, pcr.Name)
	}
	st.key, st.chain, st.pending, st.pendingKey = st.pendingKey, chain, "", nil
	st.refreshAt = m.clock.Now()
	if pcr.Status.BeginRefreshAt != nil {
		st.refreshAt = pcr.Status.BeginRefreshAt.Time
	}
	return nil
}

// requestPodCertificate generates a key of the source's type and creates a
// PodCertificateRequest for it, owned by the pod, with a stub PKCS#10
// request that proves the agent holds the key. It returns the request's
// name and the key as PKCS#8 PEM.
func (m *Manager) requestPodCertificate(ctx context.Context, pod *v1.Pod, src *v1.PodCertificateProjection, env Env) (string, []byte, error) {
	priv, err := generateKey(src.KeyType)
	if err != nil {
		return "", nil, err
	}
	stub, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, priv)
	if err != nil {
		return "", nil, fmt.Errorf("podCertificate: signing the stub certificate request: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, fmt.Errorf("podCertificate: encoding the private key: %w", err)
	}
	sa, err := m.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, pod.Spec.ServiceAccountName, metav1.GetOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("podCertificate: service account %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err)
	}
	node, err := m.client.CoreV1().Nodes().Get(ctx, env.NodeName, metav1.GetOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("podCertificate: node %s: %w", env.NodeName, err)
	}
	pcr := &certificatesv1.PodCertificateRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "req-", Namespace: pod.Namespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}},
		Spec: certificatesv1.PodCertificateRequestSpec{
			SignerName: src.SignerName, PodName: pod.Name, PodUID: pod.UID,
			ServiceAccountName: sa.Name, ServiceAccountUID: sa.UID,
			NodeName: types.NodeName(node.Name), NodeUID: node.UID,
			MaxExpirationSeconds: src.MaxExpirationSeconds, StubPKCS10Request: stub,
			UnverifiedUserAnnotations: src.UserAnnotations,
		},
	}
	pcr, err = m.client.CertificatesV1().PodCertificateRequests(pod.Namespace).Create(ctx, pcr, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("podCertificate: creating a PodCertificateRequest for signer %s: %w", src.SignerName, err)
	}
	return pcr.Name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// generateKey makes a private key of a podCertificate keyType.
func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "RSA3072":
		return rsa.GenerateKey(rand.Reader, 3072)
	case "RSA4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	case "ECDSAP256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ECDSAP384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ECDSAP521":
		return ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "ED25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("podCertificate keyType %q is not supported: use RSA3072, RSA4096, ECDSAP256, ECDSAP384, ECDSAP521 or ED25519", keyType)
}

// certificateBlocks re-encodes the PEM blocks of a chain as CERTIFICATE
// blocks, dropping headers and anything between blocks.
func certificateBlocks(in []byte) []byte {
	var out []byte
	for {
		var b *pem.Block
		b, in = pem.Decode(in)
		if b == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})...)
	}
}

// podCertificateFiles lays out a podCertificate source: the key followed by
// the chain in credentialBundlePath, and each alone in keyPath and
// certificateChainPath, whichever are set. Private keys are not for other
// users: with a pod fsGroup they are 0600, as kubelet makes them.
func podCertificateFiles(src *v1.PodCertificateProjection, key, chain []byte, mode os.FileMode, fsGroup bool) map[string]File {
	if fsGroup {
		mode = 0o600
	}
	out := map[string]File{}
	if src.CredentialBundlePath != "" {
		out[path.Clean(src.CredentialBundlePath)] = File{Data: append(append([]byte{}, key...), chain...), Mode: mode}
	}
	if src.KeyPath != "" {
		out[path.Clean(src.KeyPath)] = File{Data: key, Mode: mode}
	}
	if src.CertificateChainPath != "" {
		out[path.Clean(src.CertificateChainPath)] = File{Data: chain, Mode: mode}
	}
	return out
}
