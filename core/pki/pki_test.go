package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func testOpts(log *bytes.Buffer, now time.Time) Options {
	return Options{
		ServiceCIDR: "10.43.0.0/16,fd00:43::/112",
		IPs:         []net.IP{net.ParseIP("192.0.2.10"), net.IPv4zero},
		DNSNames:    []string{"api.example.test"},
		Hostname:    "node-a",
		Now:         func() time.Time { return now },
		Logger:      slog.New(slog.NewTextHandler(log, nil)),
	}
}

func allFiles(b *Bundle) []string {
	var out []string
	for _, p := range []Pair{b.CA, b.Serving, b.Admin, b.KubeletClient, b.FrontProxyCA, b.FrontProxyClient} {
		out = append(out, p.CertFile, p.KeyFile)
	}
	return append(out, b.ServiceAccountKey, b.ServiceAccountPublicKey)
}

func snapshot(t *testing.T, b *Bundle) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	for _, f := range allFiles(b) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("read %s: %v", f, err)
		}
		m[f] = data
	}
	return m
}

func mustCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	c, err := readCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pool(t *testing.T, path string) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(mustCert(t, path))
	return p
}

func TestEnsureCreates(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	ca := mustCert(t, b.CA.CertFile)
	if !ca.IsCA || ca.NotAfter.Sub(t0) != CALifetime {
		t.Errorf("CA: IsCA=%v lifetime=%v, want CA valid %v", ca.IsCA, ca.NotAfter.Sub(t0), CALifetime)
	}
	at := t0.Add(time.Hour)
	tests := []struct {
		name      string
		cert      string
		roots     string
		usage     x509.ExtKeyUsage
		dnsName   string
		wantCN    string
		wantGroup string
	}{
		{"serving kubernetes", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "kubernetes.default.svc.cluster.local", "kube-apiserver", ""},
		{"serving hostname", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "node-a", "kube-apiserver", ""},
		{"serving extra name", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "api.example.test", "kube-apiserver", ""},
		{"serving service IP", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "10.43.0.1", "kube-apiserver", ""},
		{"serving v6 service IP", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "fd00:43::1", "kube-apiserver", ""},
		{"serving loopback v6", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "::1", "kube-apiserver", ""},
		{"serving bind IP", b.Serving.CertFile, b.CA.CertFile, x509.ExtKeyUsageServerAuth, "192.0.2.10", "kube-apiserver", ""},
		{"admin", b.Admin.CertFile, b.CA.CertFile, x509.ExtKeyUsageClientAuth, "", AdminUser, MastersGroup},
		{"kubelet client", b.KubeletClient.CertFile, b.CA.CertFile, x509.ExtKeyUsageClientAuth, "", KubeletClientUser, MastersGroup},
		{"front proxy client", b.FrontProxyClient.CertFile, b.FrontProxyCA.CertFile, x509.ExtKeyUsageClientAuth, "", FrontProxyClientUser, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCert(t, tc.cert)
			_, err := c.Verify(x509.VerifyOptions{
				Roots: pool(t, tc.roots), DNSName: tc.dnsName, CurrentTime: at,
				KeyUsages: []x509.ExtKeyUsage{tc.usage},
			})
			if err != nil {
				t.Fatalf("verify %s: %v", tc.cert, err)
			}
			if c.Subject.CommonName != tc.wantCN {
				t.Errorf("CN = %q, want %q", c.Subject.CommonName, tc.wantCN)
			}
			if tc.wantGroup != "" && !slices.Contains(c.Subject.Organization, tc.wantGroup) {
				t.Errorf("O = %v, want %q", c.Subject.Organization, tc.wantGroup)
			}
		})
	}
	if slices.ContainsFunc(mustCert(t, b.Serving.CertFile).IPAddresses, net.IP.IsUnspecified) {
		t.Error("serving certificate contains the unspecified address 0.0.0.0")
	}
	// The front-proxy client must not be accepted as a normal client: it would be
	// able to impersonate anyone through request headers otherwise.
	if _, err := mustCert(t, b.FrontProxyClient.CertFile).Verify(x509.VerifyOptions{
		Roots: pool(t, b.CA.CertFile), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err == nil {
		t.Error("front-proxy client certificate verifies against the cluster CA")
	}
}

func TestEnsurePermissions(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{b.CA.KeyFile, b.Serving.KeyFile, b.Admin.KeyFile, b.KubeletClient.KeyFile,
		b.FrontProxyCA.KeyFile, b.FrontProxyClient.KeyFile, b.ServiceAccountKey}
	for _, k := range keys {
		if err := os.Chmod(k, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Ensure(dir, testOpts(&log, t0)); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		st, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v after restart, want 0600", k, st.Mode().Perm())
		}
	}
	if !strings.Contains(log.String(), "restricted to owner") {
		t.Error("loosened key permissions were repaired without a log line")
	}
	fresh := filepath.Join(t.TempDir(), "pki")
	if _, err := Ensure(fresh, testOpts(&log, t0)); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fresh); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("new pki dir mode = %v (%v), want 0700", st.Mode().Perm(), err)
	}
}

func TestEnsureReloadKeepsFiles(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, b)
	// Half a leaf lifetime later nothing is due yet.
	b2, err := Ensure(dir, testOpts(&log, t0.Add(LeafLifetime/2)))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	for f, data := range snapshot(t, b2) {
		if !bytes.Equal(before[f], data) {
			t.Errorf("%s changed on reload", f)
		}
	}
}

func TestEnsureBrokenFiles(t *testing.T) {
	tests := []struct {
		name     string
		breakIt  func(t *testing.T, b *Bundle)
		wantFile func(b *Bundle) string
	}{
		{"CA key missing", func(t *testing.T, b *Bundle) { remove(t, b.CA.KeyFile) },
			func(b *Bundle) string { return b.CA.KeyFile }},
		{"CA cert garbage", func(t *testing.T, b *Bundle) { write(t, b.CA.CertFile, []byte("not pem")) },
			func(b *Bundle) string { return b.CA.CertFile }},
		{"CA cert truncated", func(t *testing.T, b *Bundle) { truncate(t, b.CA.CertFile) },
			func(b *Bundle) string { return b.CA.CertFile }},
		{"serving key garbage", func(t *testing.T, b *Bundle) {
			write(t, b.Serving.KeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		},
			func(b *Bundle) string { return b.Serving.KeyFile }},
		{"admin cert missing", func(t *testing.T, b *Bundle) { remove(t, b.Admin.CertFile) },
			func(b *Bundle) string { return b.Admin.CertFile }},
		{"front-proxy CA cert missing", func(t *testing.T, b *Bundle) { remove(t, b.FrontProxyCA.CertFile) },
			func(b *Bundle) string { return b.FrontProxyCA.CertFile }},
		{"service-account public key missing", func(t *testing.T, b *Bundle) { remove(t, b.ServiceAccountPublicKey) },
			func(b *Bundle) string { return b.ServiceAccountPublicKey }},
		{"service-account keys mismatch", func(t *testing.T, b *Bundle) {
			other := otherBundle(t)
			copyFile(t, other.ServiceAccountPublicKey, b.ServiceAccountPublicKey)
		}, func(b *Bundle) string { return b.ServiceAccountPublicKey }},
		{"leaf key swapped", func(t *testing.T, b *Bundle) { copyFile(t, b.Admin.KeyFile, b.KubeletClient.KeyFile) },
			func(b *Bundle) string { return b.KubeletClient.KeyFile }},
		{"leaf from another CA", func(t *testing.T, b *Bundle) {
			other := otherBundle(t)
			copyFile(t, other.Admin.CertFile, b.Admin.CertFile)
			copyFile(t, other.Admin.KeyFile, b.Admin.KeyFile)
		}, func(b *Bundle) string { return b.Admin.CertFile }},
		{"CA key does not match", func(t *testing.T, b *Bundle) {
			copyFile(t, otherBundle(t).CA.KeyFile, b.CA.KeyFile)
		}, func(b *Bundle) string { return b.CA.KeyFile }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var log bytes.Buffer
			b, err := Ensure(dir, testOpts(&log, t0))
			if err != nil {
				t.Fatal(err)
			}
			tc.breakIt(t, b)
			before := snapshotPresent(b)
			_, err = Ensure(dir, testOpts(&log, t0))
			if err == nil {
				t.Fatal("Ensure accepted a broken PKI directory")
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error %v does not wrap ErrCorrupt", err)
			}
			if want := tc.wantFile(b); !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
			after := snapshotPresent(b)
			if len(after) != len(before) {
				t.Errorf("files present before/after failed Ensure: %d/%d; nothing may be regenerated", len(before), len(after))
			}
			for f, data := range before {
				if !bytes.Equal(after[f], data) {
					t.Errorf("%s was rewritten by a failed Ensure", f)
				}
			}
		})
	}
}

func TestEnsureSANGrowthReissuesServingOnly(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	opts := testOpts(&log, t0)
	b, err := Ensure(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, b)
	oldServing := mustCert(t, b.Serving.CertFile)

	log.Reset()
	opts.IPs = []net.IP{net.ParseIP("198.51.100.7")} // the old 192.0.2.10 is gone this time
	opts.DNSNames = append(opts.DNSNames, "lb.example.test")
	b2, err := Ensure(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, b2)
	for f := range before {
		changed := !bytes.Equal(before[f], after[f])
		if want := f == b.Serving.CertFile; changed != want {
			t.Errorf("%s changed=%v, want %v", f, changed, want)
		}
	}
	c := mustCert(t, b2.Serving.CertFile)
	for _, name := range []string{"198.51.100.7", "192.0.2.10", "lb.example.test", "api.example.test", "kubernetes"} {
		if err := c.VerifyHostname(name); err != nil {
			t.Errorf("reissued serving cert: %v", err)
		}
	}
	if c.SerialNumber.Cmp(oldServing.SerialNumber) == 0 {
		t.Error("serving cert serial unchanged")
	}
	if err := c.CheckSignatureFrom(mustCert(t, b.CA.CertFile)); err != nil {
		t.Errorf("reissued serving cert not from the same CA: %v", err)
	}
	if !strings.Contains(log.String(), "reissued certificate") || !strings.Contains(log.String(), "198.51.100.7") {
		t.Errorf("reissue not logged with the new name; log: %s", log.String())
	}
}

func TestEnsureRenewal(t *testing.T) {
	tests := []struct {
		name          string
		later         time.Duration
		wantLeafNew   bool
		wantErr       bool
		wantLogSubstr string
	}{
		{"fresh", time.Hour, false, false, ""},
		{"just before two thirds", LeafLifetime*2/3 - time.Hour, false, false, ""},
		{"leaf past two thirds", LeafLifetime*2/3 + time.Hour, true, false, "past two thirds"},
		{"CA past two thirds", CALifetime*2/3 + time.Hour, true, false, "plan a CA rotation"},
		{"CA expired", CALifetime + time.Hour, false, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var log bytes.Buffer
			b, err := Ensure(dir, testOpts(&log, t0))
			if err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, b)
			log.Reset()
			_, err = Ensure(dir, testOpts(&log, t0.Add(tc.later)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Ensure error = %v, wantErr %v", err, tc.wantErr)
			}
			after := snapshot(t, b)
			for _, ca := range []Pair{b.CA, b.FrontProxyCA} {
				if !bytes.Equal(before[ca.CertFile], after[ca.CertFile]) || !bytes.Equal(before[ca.KeyFile], after[ca.KeyFile]) {
					t.Errorf("CA %s was replaced", ca.CertFile)
				}
			}
			for _, leaf := range []Pair{b.Serving, b.Admin, b.KubeletClient, b.FrontProxyClient} {
				if changed := !bytes.Equal(before[leaf.CertFile], after[leaf.CertFile]); changed != tc.wantLeafNew {
					t.Errorf("%s changed=%v, want %v", leaf.CertFile, changed, tc.wantLeafNew)
				}
				if !bytes.Equal(before[leaf.KeyFile], after[leaf.KeyFile]) {
					t.Errorf("%s: reissue changed the key", leaf.KeyFile)
				}
			}
			if tc.wantLogSubstr != "" && !strings.Contains(log.String(), tc.wantLogSubstr) {
				t.Errorf("log lacks %q: %s", tc.wantLogSubstr, log.String())
			}
			if tc.wantLeafNew && !tc.wantErr {
				c := mustCert(t, b.Admin.CertFile)
				if !c.NotAfter.After(t0.Add(tc.later)) {
					t.Errorf("reissued admin cert already expired: %v", c.NotAfter)
				}
			}
		})
	}
}

func TestWriteKubeconfig(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(filepath.Join(dir, "tls"), testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "admin.kubeconfig")
	steps := []struct {
		name        string
		server      string
		chmod       os.FileMode
		wantWritten bool
	}{
		{"new", "https://127.0.0.1:6443", 0, true},
		{"identical", "https://127.0.0.1:6443", 0, false},
		{"identical but loosened", "https://127.0.0.1:6443", 0o644, false},
		{"server moved", "https://192.0.2.10:6443", 0, true},
	}
	for _, st := range steps {
		if st.chmod != 0 {
			if err := os.Chmod(path, st.chmod); err != nil {
				t.Fatal(err)
			}
		}
		written, err := WriteKubeconfig(path, st.server, b.CA.CertFile, b.Admin)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if written != st.wantWritten {
			t.Errorf("%s: written=%v, want %v", st.name, written, st.wantWritten)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != KubeconfigMode {
			t.Errorf("%s: mode %v, want %v", st.name, fi.Mode().Perm(), KubeconfigMode)
		}
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			t.Fatalf("%s: load: %v", st.name, err)
		}
		if cfg.Host != st.server || len(cfg.CertData) == 0 || len(cfg.KeyData) == 0 || len(cfg.CAData) == 0 {
			t.Errorf("%s: loaded host=%q cert=%d key=%d ca=%d", st.name, cfg.Host, len(cfg.CertData), len(cfg.KeyData), len(cfg.CAData))
		}
	}
}

func otherBundle(t *testing.T) *Bundle {
	t.Helper()
	var log bytes.Buffer
	b, err := Ensure(t.TempDir(), testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func snapshotPresent(b *Bundle) map[string][]byte {
	m := map[string][]byte{}
	for _, f := range allFiles(b) {
		if data, err := os.ReadFile(f); err == nil {
			m[f] = data
		}
	}
	return m
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func truncate(t *testing.T, p string) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	write(t, p, data[:len(data)/2])
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, data)
}

// BenchmarkEnsureReload measures what every server start pays to load and check
// an existing PKI directory.
func BenchmarkEnsureReload(b *testing.B) {
	dir := b.TempDir()
	var log bytes.Buffer
	if _, err := Ensure(dir, testOpts(&log, t0)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Ensure(dir, testOpts(&log, t0)); err != nil {
			b.Fatal(err)
		}
	}
}
