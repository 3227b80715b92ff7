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

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/agent/gossip"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/nodeproof"
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

// TestGossipKeyDoesNotKeepANodeReady: a node's agent proves its gossip
// membership with its bound key. Once it dies, a worker holding only the
// gossip key joins the pool under the dead node's name (replaying the
// node's published proof from its own address): the node must stay
// Unknown, not come back Ready.
func TestGossipKeyDoesNotKeepANodeReady(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{NodeName: "sec-server", Args: []string{"--node-monitor-grace-period", "3s"}})
	sup := SupervisorOf(s)
	agentTok := ReadToken(t, s.AgentTokenFile(t))
	key := NewKey(t)
	creds, err := sup.NodeCredentials(t, agentTok, "victim", key, []string{"victim"}, "10.200.0.7")
	if err != nil {
		t.Fatalf("the victim's node credentials: %v", err)
	}
	cs := s.Clientset(t)
	ctx := context.Background()
	// What the victim's agent writes when it registers: its Ready status
	// and that it proves its membership.
	n, err := cs.CoreV1().Nodes().Get(ctx, "victim", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Annotations[nodeproof.RequiredAnnotation] = "true"
	if n, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	var published string
	victim, err := gossip.Join(ctx, gossip.Config{NodeName: "victim", GossipKey: creds.GossipKey, Servers: []string{s.SerfAddr()},
		BindAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), Tune: fastGossip,
		Proof: func(addr string) (string, error) {
			var err error
			published, err = nodeproof.Sign(key, "victim", addr)
			return published, err
		}})
	if err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, time.Minute, "the victim gossip-managed and Ready", func() (bool, string) {
		n, err := cs.CoreV1().Nodes().Get(ctx, "victim", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return n.Annotations[nodehealth.LivenessAnnotation] == nodehealth.LivenessGossip && readyStatus(n) == corev1.ConditionTrue, fmt.Sprint(n.Annotations, readyStatus(n))
	})
	_ = victim.Close() // the node dies
	waitReady(t, cs, "victim", corev1.ConditionUnknown, 2*time.Minute)

	impostor, err := gossip.Join(ctx, gossip.Config{NodeName: "victim", GossipKey: creds.GossipKey, Servers: []string{s.SerfAddr()},
		BindAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), Tune: fastGossip,
		Proof: func(string) (string, error) { return published, nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = impostor.Close() })
	// The server reclaims the dead member's name for the impostor (serf's
	// dead-node reclaim time), then the leader judges its proof.
	s.WaitLog(t, "ignoring a gossip member that claims a node's name without proving its key", 2*time.Minute)
	time.Sleep(5 * time.Second) // rounds that would restore Ready without the proof check
	n, err = cs.CoreV1().Nodes().Get(ctx, "victim", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := readyStatus(n); st != corev1.ConditionUnknown {
		t.Fatalf("the dead node's Ready is %s with an impostor in the pool, want Unknown", st)
	}
}

// fastGossip shortens the simulated members' failure detection.
func fastGossip(c *serfpool.Config) {
	c.ProbeInterval, c.ProbeTimeout, c.GossipInterval = 200*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	c.RetryJoinInterval, c.RetryJoinMaxInterval = 500*time.Millisecond, 2*time.Second
}

func readyStatus(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

func waitReady(t *testing.T, cs kubernetes.Interface, name string, want corev1.ConditionStatus, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, fmt.Sprintf("node %s Ready %s", name, want), func() (bool, string) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return readyStatus(n) == want, string(readyStatus(n))
	})
}
