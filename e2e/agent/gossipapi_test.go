package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/serfpool"
)

// testGossipAPIAddressMustBeProven: a process holding the gossip key joins
// the pool claiming role=server, with an API address that answers TLS with a
// node certificate signed by the cluster CA and naming 127.0.0.1 (what a
// compromised worker could hold). The agent must not add that address to
// its failover list nor remember it in servers.json.
func (c *cluster) testGossipAPIAddressMustBeProven(t *testing.T) {
	if c.embedded {
		t.Skip("a server's own agent does not follow gossip")
	}
	token, err := os.ReadFile(filepath.Join(c.server.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := serfpool.GossipKey(strings.TrimSpace(string(token)))
	if err != nil {
		t.Fatal(err)
	}
	addr := serveNodeCert(t, filepath.Join(c.server.DataDir, "pki"))
	cfg := serfpool.DefaultConfig()
	cfg.NodeName, cfg.Role = "intruder-api", serfpool.RoleServer
	cfg.BindAddr = "127.0.0.1:0"
	cfg.RaftAddr, cfg.APIAddr = addr, addr
	cfg.GossipKey = key
	cfg.Join = []string{c.server.SerfAddr()}
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool, err := serfpool.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Shutdown()

	// The agent follows the pool's servers every 10 s.
	deadline := time.Now().Add(45 * time.Second)
	for {
		b, _ := os.ReadFile(c.agentLog)
		if strings.Contains(string(b), "ignoring a gossip member's API address") && strings.Contains(string(b), addr) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent never judged the intruder's API address %s (log %s)", addr, c.agentLog)
		}
		time.Sleep(500 * time.Millisecond)
	}
	known, _ := os.ReadFile(filepath.Join(config.AgentDir(c.dataDir), "servers.json"))
	if strings.Contains(string(known), addr) {
		t.Errorf("servers.json remembers the intruder's API address %s: %s", addr, known)
	}
}

// serveNodeCert serves TLS on loopback with a node's serving certificate
// (CN worker-9, O system:nodes, IP 127.0.0.1) signed by the cluster CA in
// pkiDir, until the test ends.
func serveNodeCert(t *testing.T, pkiDir string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "ca.crt"), filepath.Join(pkiDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:   pkix.Name{CommonName: "worker-9", Organization: []string{"system:nodes"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _ = conn.(*tls.Conn).Handshake(); conn.Close() }()
		}
	}()
	return l.Addr().String()
}
