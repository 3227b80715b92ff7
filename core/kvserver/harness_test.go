package kvserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// node is one single-server store (fsm + raft + etcd API) on loopback, as
// `keelson server --disable-apiserver` runs it.
type node struct {
	t       testing.TB
	dir     string
	cfg     Config
	raft    *raftnode.Node
	kv      *Server
	grpc    *grpc.Server
	addr    string
	clients []*clientv3.Client
}

func startNode(t testing.TB, dir string, mutate func(*Config)) *node {
	t.Helper()
	return startMember(t, dir, "n1", true, mutate)
}

// startMember starts one server; only a bootstrapping one waits for
// leadership (the others wait to be added as voters).
func startMember(t testing.TB, dir, id string, bootstrap bool, mutate func(*Config)) *node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := fsm.New()
	rc := raftnode.DefaultConfig()
	rc.NodeID = id
	rc.DataDir = filepath.Join(dir, "raft")
	rc.BindAddr = "127.0.0.1:0"
	rc.Bootstrap = bootstrap
	rc.HeartbeatTimeout = 300 * time.Millisecond
	rc.ElectionTimeout = 300 * time.Millisecond
	rc.LeaderLeaseTimeout = 200 * time.Millisecond
	rc.Logger = log
	r, err := raftnode.New(rc, Machine{Store: store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.MemberID, cfg.ClusterID = MemberID(id), 42
	cfg.LeaseMinTTL = time.Second
	cfg.Logger = log
	if mutate != nil {
		mutate(&cfg)
	}
	kv := New(cfg, store, r)
	kv.Start()
	g := kv.NewGRPCServer()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go Serve(g, l)
	go Serve(g, r.PeerListener())
	n := &node{t: t, dir: dir, cfg: cfg, raft: r, kv: kv, grpc: g, addr: l.Addr().String()}
	if !bootstrap {
		t.Cleanup(n.stop)
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err := r.LinearizableRead(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no leader within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(n.stop)
	return n
}

func (n *node) client() *clientv3.Client {
	n.t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{n.addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		n.t.Fatal(err)
	}
	n.clients = append(n.clients, c)
	return c
}

func (n *node) stop() {
	if n.grpc == nil {
		return
	}
	for _, c := range n.clients {
		c.Close()
	}
	n.grpc.Stop()
	n.kv.Stop()
	if err := n.raft.Shutdown(); err != nil {
		n.t.Errorf("raft shutdown: %v", err)
	}
	n.grpc = nil
}

// restart stops the node and starts a new one on the same data dir, as a
// process restart would (the in-memory store is rebuilt from raft's snapshot
// and log).
func (n *node) restart() *node {
	n.stop()
	return startNode(n.t, n.dir, nil)
}

// startCluster starts three members: n1 bootstraps and adds the others.
func startCluster(t *testing.T) []*node {
	t.Helper()
	return startClusterWith(t, nil)
}

// startClusterWith is startCluster with every member's Config changed by
// mutate.
func startClusterWith(t *testing.T, mutate func(*Config)) []*node {
	t.Helper()
	nodes := []*node{startNode(t, t.TempDir(), mutate)}
	for _, id := range []string{"n2", "n3"} {
		m := startMember(t, t.TempDir(), id, false, mutate)
		// On a busy machine the leader may step down while a new voter
		// catches up; retry the change and wait until the member serves.
		ctx := ctxT(t)
		for {
			err := leaderOf(t, nodes).raft.AddVoter(ctx, id, m.raft.Addr())
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("adding %s: %v", id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for {
			if _, err := m.raft.LinearizableRead(ctx); err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never caught up", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nodes = append(nodes, m)
	}
	return nodes
}

// leaderOf waits for one of nodes to lead.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if n.raft.IsLeader() {
				return n
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
