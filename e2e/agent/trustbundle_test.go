package agent

import (
	"context"
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

func selfSignedCAPEM(t *testing.T, cn string) string {
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

// testClusterTrustBundleVolume: a projected volume holds the certificates
// of a ClusterTrustBundle named outright and of the bundles a signer name
// and label selector pick (joined, each certificate once), read with the
// node's own API identity; a pod whose non-optional bundle is missing
// does not start, says why, and starts once the bundle exists.
func (c *cluster) testClusterTrustBundleVolume(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "ctb")
	suffix := randomSuffix()
	signer := "example.com/e2e-" + suffix
	prefix := strings.ReplaceAll(signer, "/", ":") + ":"
	ca := map[string]string{}
	for _, n := range []string{"named", "live1", "live2", "dead"} {
		ca[n] = selfSignedCAPEM(t, n)
	}
	create := func(name, signerName, bundle string, labels map[string]string) {
		t.Helper()
		ctb := &certificatesv1.ClusterTrustBundle{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: certificatesv1.ClusterTrustBundleSpec{SignerName: signerName, TrustBundle: bundle}}
		if _, err := c.client.CertificatesV1().ClusterTrustBundles().Create(ctx, ctb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.client.CertificatesV1().ClusterTrustBundles().Delete(ctx, name, metav1.DeleteOptions{}) })
	}
	create("named-"+suffix, "", ca["named"], nil)
	create(prefix+"one", signer, ca["live1"], map[string]string{"live": "yes"})
	create(prefix+"two", signer, ca["live2"]+ca["live1"], map[string]string{"live": "yes"})
	create(prefix+"three", signer, ca["dead"], map[string]string{"live": "no"})

	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: anchors
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  volumes:
  - name: ctb
    projected:
      sources:
      - clusterTrustBundle: {name: named-`+suffix+`, path: named.pem}
      - clusterTrustBundle:
          signerName: `+signer+`
          labelSelector: {matchLabels: {live: "yes"}}
          path: signer.pem
      - clusterTrustBundle: {name: absent-`+suffix+`, path: optional.pem, optional: true}
  containers:
  - name: reader
    image: `+c.busybox+`
    command: ['sh', '-c', 'cat /ctb/named.pem; echo "--- $(stat -L -c %a /ctb/signer.pem)"; cat /ctb/signer.pem; echo "--- $(wc -c < /ctb/optional.pem)"']
    volumeMounts: [{name: ctb, mountPath: /ctb}]
`)
	c.waitPod(t, ns, "anchors", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	out := c.server.Kubectl(t, "logs", "-n", ns, "anchors").Stdout
	parts := strings.Split(out, "--- ")
	if len(parts) != 3 {
		t.Fatalf("output %q, want three parts", out)
	}
	named, signed, optional := parts[0], parts[1], parts[2]
	if named != ca["named"] {
		t.Errorf("named.pem %q, want the named bundle's certificate", named)
	}
	if !strings.HasPrefix(signed, "644\n") {
		t.Errorf("signer.pem mode line %q, want 644", strings.SplitN(signed, "\n", 2)[0])
	}
	signed = strings.TrimPrefix(signed, "644\n")
	if len(signed) != len(ca["live1"])+len(ca["live2"]) || !strings.Contains(signed, ca["live1"]) || !strings.Contains(signed, ca["live2"]) {
		t.Errorf("signer.pem %q, want the two live bundles' certificates, each once, and not the dead one", signed)
	}
	if strings.TrimSpace(optional) != "0" {
		t.Errorf("optional.pem of a missing bundle has %q bytes, want an empty file", optional)
	}

	// A missing, non-optional bundle keeps the pod from starting.
	missing := "later-" + suffix
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: blocked
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  volumes:
  - name: ctb
    projected:
      sources:
      - clusterTrustBundle: {name: `+missing+`, path: ca.pem}
  containers:
  - name: reader
    image: `+c.busybox+`
    command: ['cat', '/ctb/ca.pem']
    volumeMounts: [{name: ctb, mountPath: /ctb}]
`)
	harness.Eventually(t, 2*time.Minute, "a FailedMount event names the missing bundle", func() (bool, string) {
		evs, err := c.client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=blocked"})
		if err != nil {
			return false, err.Error()
		}
		var seen []string
		for _, e := range evs.Items {
			if e.Reason == "FailedMount" && strings.Contains(e.Message, missing) {
				return true, ""
			}
			seen = append(seen, e.Reason+": "+e.Message)
		}
		return false, strings.Join(seen, "\n")
	})
	p, err := c.client.CoreV1().Pods(ns).Get(ctx, "blocked", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != v1.PodPending {
		t.Errorf("pod with a missing bundle is %s, want Pending: %s", p.Status.Phase, describe(p))
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == v1.PodReady && (cond.Status != v1.ConditionFalse || cond.Reason != "ContainersNotReady" || cond.Message != "containers with unready status: [reader]") {
			t.Errorf("Ready condition %+v, want False/ContainersNotReady naming the container", cond)
		}
	}
	// Once the bundle exists, the next volume sync succeeds.
	create(missing, "", ca["named"], nil)
	c.waitPod(t, ns, "blocked", 3*time.Minute, "succeeded", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded })
	if got := c.server.Kubectl(t, "logs", "-n", ns, "blocked").Stdout; got != ca["named"] {
		t.Errorf("late bundle's file %q, want its certificate", got)
	}
}
