package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/serfpool"
)

// TestGossipKeyIsNotAServer plays a worker that holds what a worker has (its
// agent token, its node credentials and so the gossip key) and joins the
// gossip pool claiming role=server, with a raft address that answers TLS
// with the worker's own node certificate (signed by the cluster
// CA). The leader must not make it a raft voter: with one server, a second
// voter that never votes would cost the cluster its quorum.
func TestGossipKeyIsNotAServer(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{NodeName: "sec-server"})
	sup := SupervisorOf(s)
	agentTok := ReadToken(t, s.AgentTokenFile(t))
	key := NewKey(t)
	creds, err := sup.NodeCredentials(t, agentTok, "worker-1", key, []string{"worker-1"}, "10.200.0.7")
	if err != nil {
		t.Fatalf("the worker's node credentials: %v", err)
	}

	// The fake raft port: TLS with the worker's CA-signed node certificate.
	pair, err := tls.X509KeyPair(creds.ClientCert, pemKey(t, key))
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
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
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()

	cfg := serfpool.DefaultConfig()
	cfg.NodeName, cfg.Role = "intruder", serfpool.RoleServer
	cfg.BindAddr = net.JoinHostPort("127.0.0.1", "0")
	cfg.RaftAddr, cfg.APIAddr = l.Addr().String(), l.Addr().String()
	cfg.GossipKey = creds.GossipKey
	cfg.Join = []string{s.SerfAddr()}
	cfg.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool, err := serfpool.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pool.Shutdown() })

	s.WaitLog(t, "did not prove a server identity", time.Minute)
	// A few more reconcile rounds (one per membership change and every 10 s).
	time.Sleep(12 * time.Second)
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	peers, err := s.Peers(pctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers.Peers) != 1 || peers.Peers[0].ID != "sec-server" {
		t.Fatalf("raft peers %+v, want sec-server alone (the gossiping intruder is no voter)", peers.Peers)
	}
	if peers.State != "Leader" {
		t.Errorf("the server is %s, want Leader (quorum kept)", peers.State)
	}
	s.MustKubectl(t, "get", "namespaces")
}

func pemKey(t *testing.T, key any) []byte {
	t.Helper()
	b, err := marshalPKCS8PEM(key)
	if err != nil {
		t.Fatal(fmt.Errorf("encoding the key: %w", err))
	}
	return b
}

func marshalPKCS8PEM(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
