package pki

import (
	"bytes"
	"crypto/tls"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// servedNotAfter completes a handshake against a listener using serverCfg's
// certificates and returns the NotAfter of the certificate it served. The
// test clock is years ahead, so neither side verifies validity.
func servedNotAfter(t *testing.T, serverCfg, clientCfg *tls.Config) time.Time {
	t.Helper()
	sc := serverCfg.Clone()
	sc.VerifyPeerCertificate = nil
	l, err := tls.Listen("tcp", "127.0.0.1:0", sc)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	var got time.Time
	cc := clientCfg.Clone()
	cc.VerifyPeerCertificate = nil
	cc.VerifyConnection = func(cs tls.ConnectionState) error {
		got = cs.PeerCertificates[0].NotAfter
		return nil
	}
	c, err := tls.Dial("tcp", l.Addr().String(), cc)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.Close()
	return got
}

func TestRenewReissuesDueLeavesAndPeerTLSServesThem(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	opts := testOpts(&log, t0)
	opts.LeafLifetime = 30 * time.Second
	b, err := Ensure(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := b.PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	if got := servedNotAfter(t, peer, peer); !got.Equal(t0.Add(30 * time.Second).Truncate(time.Second)) {
		t.Fatalf("peer certificate NotAfter = %v, want %v", got, t0.Add(30*time.Second))
	}
	// A third of the lifetime in: nothing is due.
	opts.Now = func() time.Time { return t0.Add(10 * time.Second) }
	renewed, err := b.Renew(opts)
	if err != nil || len(renewed) != 0 {
		t.Fatalf("Renew before two thirds = %v, %v; want nothing renewed", renewed, err)
	}
	keysBefore := snapshot(t, b)
	// Past two thirds: every leaf is reissued, the CAs and keys stay.
	later := t0.Add(25 * time.Second)
	opts.Now = func() time.Time { return later }
	renewed, err = b.Renew(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{b.Serving.CertFile, b.Admin.CertFile, b.KubeletClient.CertFile, b.FrontProxyClient.CertFile, b.Peer.CertFile}
	slices.Sort(want)
	slices.Sort(renewed)
	if !slices.Equal(renewed, want) {
		t.Fatalf("renewed %v, want %v", renewed, want)
	}
	after := snapshot(t, b)
	for _, f := range []string{b.CA.CertFile, b.CA.KeyFile, b.FrontProxyCA.CertFile, b.Admin.KeyFile, b.ServiceAccountKey} {
		if !bytes.Equal(keysBefore[f], after[f]) {
			t.Errorf("%s changed on renewal", f)
		}
	}
	// The same tls.Config, built before the renewal, serves the new one.
	if got := servedNotAfter(t, peer, peer); !got.Equal(later.Add(30 * time.Second).Truncate(time.Second)) {
		t.Fatalf("after renewal the peer port serves NotAfter %v, want %v", got, later.Add(30*time.Second))
	}
	if c := mustCert(t, b.Serving.CertFile); !c.NotAfter.Equal(later.Add(30 * time.Second).Truncate(time.Second)) {
		t.Fatalf("serving certificate NotAfter %v after renewal", c.NotAfter)
	}
}

func TestRenewNeverCreatesCA(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	remove(t, b.CA.CertFile)
	remove(t, b.CA.KeyFile)
	_, err = b.Renew(testOpts(&log, t0.Add(LeafLifetime)))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "restore them") {
		t.Fatalf("Renew without a CA = %v, want a refusal to create one", err)
	}
	if _, err := os.Stat(b.CA.CertFile); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Renew created a CA")
	}
}

func TestCertReloaderKeepsLastGoodPair(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	b, err := Ensure(dir, testOpts(&log, t0))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewCertReloader(b.Peer, b.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.GetCertificate(nil)
	if err != nil || len(first.Certificate) != 2 {
		t.Fatalf("GetCertificate = %v, %v; want leaf and CA", first, err)
	}
	truncate(t, b.Peer.CertFile)
	got, err := r.GetCertificate(nil)
	if err != nil || got != first {
		t.Fatalf("with a torn certificate file: %v, %v; want the previous pair", got, err)
	}
	if _, err := NewCertReloader(b.Peer); err == nil {
		t.Fatal("NewCertReloader accepted an unreadable pair")
	}
}

func TestCheckExpiry(t *testing.T) {
	dir := t.TempDir()
	var log bytes.Buffer
	if _, err := Ensure(dir, testOpts(&log, t0)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		at   time.Time
		// warned lists the certificates that must carry a warning.
		warned  []string
		contain string
	}{
		{"fresh", t0.Add(time.Hour), nil, ""},
		{"leaves overdue", t0.Add(LeafLifetime * 9 / 10), []string{"API serving", "admin client", "kubelet client", "front-proxy client", "server peer"}, "should have been renewed"},
		{"CA within 30 days", t0.Add(CALifetime - 20*24*time.Hour), []string{"cluster CA", "front-proxy CA", "API serving", "admin client", "kubelet client", "front-proxy client", "server peer"}, "rotate the CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts, err := CheckExpiry(dir, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			var warned []string
			all := ""
			for _, st := range sts {
				if st.Warning != "" {
					warned = append(warned, st.Name)
					all += st.Warning + "\n"
				}
				if st.Renewable == st.RenewAt.IsZero() {
					t.Errorf("%s: renewable %v but RenewAt %v", st.Name, st.Renewable, st.RenewAt)
				}
			}
			if !slices.Equal(warned, tc.warned) {
				t.Fatalf("warnings on %v, want %v:\n%s", warned, tc.warned, all)
			}
			if !strings.Contains(all, tc.contain) {
				t.Fatalf("warnings lack %q:\n%s", tc.contain, all)
			}
		})
	}
	var logged bytes.Buffer
	b := newBundle(dir)
	if err := b.WarnExpiring(testOpts(&logged, t0.Add(CALifetime-20*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), "cluster CA") {
		t.Fatalf("WarnExpiring logged: %s", logged.String())
	}
}
