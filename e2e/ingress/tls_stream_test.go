package ingress

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testTLS serves two hosts with their own Secrets: each verifies against
// the test CA only with its own certificate, so a success is the SNI
// choosing the right one.
func testTLS(t *testing.T, c *cluster) {
	caPEM, leaves := issue(t, "tls.example", "tls2.example")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for host, pair := range leaves {
		s := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Name: strings.TrimSuffix(host, ".example")}, Type: v1.SecretTypeTLS,
			Data: map[string][]byte{v1.TLSCertKey: pair[0], v1.TLSPrivateKeyKey: pair[1]}}
		if _, err := c.kube.CoreV1().Secrets("default").Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.apply(t, `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: tls
spec:
  tls:
  - {hosts: [tls.example], secretName: tls}
  - {hosts: [tls2.example], secretName: tls2}
  rules:
  - host: tls.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: foo, port: {number: 80}}}}]}
  - host: tls2.example
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: bar, port: {number: 80}}}}]}
`)
	r := c.expect(t, "https", "tls.example", "/secure", 200, "foo-", "--cacert", caFile)
	if !strings.Contains(r.body, "proto=https") {
		t.Errorf("over TLS the backend saw %s; want X-Forwarded-Proto https", r.body)
	}
	c.expect(t, "https", "tls2.example", "/", 200, "bar-", "--cacert", caFile)
	// HTTP/2 over TLS (ALPN) to an HTTP/1.1 backend.
	c.expect(t, "https", "tls.example", "/h2", 200, "foo-", "--cacert", caFile, "--http2")
	// httpsRedirect is off by default: plain HTTP serves the host too.
	c.expect(t, "http", "tls.example", "/", 200, "foo-")
}

// issue returns a CA and a certificate and key for each host, signed by it.
func issue(t *testing.T, hosts ...string) ([]byte, map[string][2][]byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingress e2e CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	out := map[string][2][]byte{}
	for i, h := range hosts {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: h}, DNSNames: []string{h},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, _ := x509.MarshalECPrivateKey(key)
		out[h] = [2][]byte{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), out
}

func streamIngress(svc string) string {
	return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: stream
spec:
  rules:
  - host: stream.example
    http: {paths: [{path: /s, pathType: Prefix, backend: {service: {name: ` + svc + `, port: {number: 80}}}}]}
`
}

// testStreamingUpdate streams requests over one keep-alive connection
// while the Ingress's backend is switched back and forth: every request
// must be answered 200, by whichever backend the table held.
func testStreamingUpdate(t *testing.T, c *cluster) {
	c.apply(t, streamIngress("foo"))
	c.expect(t, "http", "stream.example", "/s", 200, "foo-")
	const n = 600
	curl := exec.Command("ip", "netns", "exec", c.client.NS, "curl", "-sS", "--max-time", "60", "--rate", "100/s",
		"--resolve", "stream.example:80:"+c.lbIP, "-w", "%{http_code}\n", "http://stream.example/s/[1-600]")
	var out, errOut bytes.Buffer
	curl.Stdout, curl.Stderr = &out, &errOut
	if err := curl.Start(); err != nil {
		t.Fatal(err)
	}
	for i, svc := range []string{"bar", "foo", "bar"} {
		time.Sleep(time.Duration(i+1) * 300 * time.Millisecond) // pacing only: spread the updates over the stream
		c.apply(t, streamIngress(svc))
	}
	if err := curl.Wait(); err != nil {
		t.Fatalf("curl: %v: %s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	served := map[string]int{}
	for i := 0; i+1 < len(lines); i += 2 {
		body, code := lines[i], lines[i+1]
		if code != "200" {
			t.Errorf("request %d during the updates: %s %q", i/2+1, code, body)
			continue
		}
		served[strings.SplitN(body, "-", 2)[0]]++
	}
	if len(lines) != 2*n || served["foo"] == 0 || served["bar"] == 0 {
		t.Errorf("%d answer lines (want %d), by backend %v: want all %d requests answered, by both backends", len(lines), 2*n, served, n)
	}
	t.Logf("%d requests over one connection during 3 updates, answered by %v", n, served)
}
