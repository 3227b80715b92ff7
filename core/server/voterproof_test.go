package server

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/pki"
)

// TestProveServerByPeerTLS: the member answering at a raft address must show
// the peer certificate of the server it claims to be; a real server of the
// cluster passes for its own name only, and a listener without the cluster's
// peer certificate never passes.
func TestProveServerByPeerTLS(t *testing.T) {
	s1 := peerBundle(t, "s1", "")
	s2 := peerBundle(t, "s2", s1.CA.CertFile)
	other := peerBundle(t, "s3", "") // another cluster's CA

	cfg1, err := s1.PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	prove := proveServerByPeerTLS(cfg1)
	addr2 := servePeerTLS(t, s2)
	addrOther := servePeerTLS(t, other)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := prove(ctx, "s2", addr2); err != nil {
		t.Errorf("s2 at its own raft address: %v, want proven", err)
	}
	if err := prove(ctx, "intruder", addr2); err == nil || !strings.Contains(err.Error(), `not "keelson-server:intruder"`) {
		t.Errorf("a member named intruder pointing at s2's raft address: %v, want refused naming the identity", err)
	}
	if err := prove(ctx, "s3", addrOther); err == nil {
		t.Error("a server of another cluster (other CA) was accepted")
	}
	if err := prove(ctx, "s2", "127.0.0.1:1"); err == nil {
		t.Error("an address where nothing listens was accepted")
	}
}

// peerBundle makes a server's PKI in a temp dir; with caFrom set, it first
// copies that CA (cert and key) so both servers are of one cluster.
func peerBundle(t *testing.T, name, caFrom string) *pki.Bundle {
	t.Helper()
	dir := t.TempDir()
	if caFrom != "" {
		copyCA(t, caFrom, dir)
	}
	b, err := pki.Ensure(dir, pki.Options{Hostname: name, NodeName: name})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func copyCA(t *testing.T, caCert, dir string) {
	t.Helper()
	src := filepath.Dir(caCert)
	for _, f := range []string{filepath.Base(caCert), strings.TrimSuffix(filepath.Base(caCert), ".crt") + ".key"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// servePeerTLS accepts TLS connections with b's peer credentials on a
// loopback port until the test ends, completing each handshake.
func servePeerTLS(t *testing.T, b *pki.Bundle) string {
	t.Helper()
	cfg, err := b.PeerTLS()
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				buf := make([]byte, 1)
				_, _ = c.Read(buf)
			}()
		}
	}()
	return l.Addr().String()
}
