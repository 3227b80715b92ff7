package ops

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// testWait bounds how long a test waits for the cluster to converge; it is
// a deadlock guard, never a timing claim.
const testWait = 60 * time.Second

// machine adapts fsm.Store to raftnode.StateMachine, as core/server does.
type machine struct{ store *fsm.Store }

func (m machine) Apply(index, term uint64, cmd []byte) (any, error) {
	return m.store.ApplyEntry(index, term, cmd), nil
}
func (m machine) Snapshot() (raftnode.SnapshotWriter, error) { return m.store.View(), nil }
func (m machine) Restore(r io.Reader) error                  { return m.store.Restore(r) }

// testNode is one in-process server: a store and raft on a loopback port.
type testNode struct {
	id    string
	dir   string
	store *fsm.Store
	node  *raftnode.Node
}

func startNode(t *testing.T, id, dir, bind string, bootstrap bool) *testNode {
	t.Helper()
	return startNodeLog(t, id, dir, bind, bootstrap, raftnode.LogStoreWAL)
}

// startNodeLog is startNode with the raft log in logStore.
func startNodeLog(t *testing.T, id, dir, bind string, bootstrap bool, logStore string) *testNode {
	t.Helper()
	rc := raftnode.DefaultConfig()
	rc.LogStore = logStore
	rc.NodeID = id
	rc.DataDir = filepath.Join(dir, raftDirName)
	rc.BindAddr = bind
	rc.Bootstrap = bootstrap
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	rc.Logger = slog.New(slog.DiscardHandler)
	n := &testNode{id: id, dir: dir, store: fsm.New()}
	node, err := raftnode.New(rc, machine{n.store})
	if err != nil {
		t.Fatalf("starting node %s: %v", id, err)
	}
	n.node = node
	t.Cleanup(func() { n.stop() })
	return n
}

func (n *testNode) stop() {
	if n.node != nil {
		n.node.Shutdown()
	}
}

// put writes key=value through raft and returns its revision.
func (n *testNode) put(t *testing.T, key, value string) int64 {
	t.Helper()
	cmd, err := fsm.Encode(fsm.CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{{
		Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte(value)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	res, _, err := n.node.Apply(ctx, cmd)
	if err != nil {
		t.Fatalf("put %s on %s: %v", key, n.id, err)
	}
	r := res.(fsm.Result)
	if r.Err != nil {
		t.Fatalf("put %s on %s: %v", key, n.id, r.Err)
	}
	return r.Rev
}

// get reads key linearizably and returns its value and mod revision.
func (n *testNode) get(t *testing.T, key string) (string, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	if _, err := n.node.LinearizableRead(ctx); err != nil {
		t.Fatalf("linearizable read on %s: %v", n.id, err)
	}
	resp, err := n.store.View().Range(&pb.RangeRequest{Key: []byte(key)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", 0
	}
	return string(resp.Kvs[0].Value), resp.Kvs[0].ModRevision
}

// startCluster starts n nodes; the first bootstraps and adds the others.
func startCluster(t *testing.T, n int) []*testNode {
	t.Helper()
	return startClusterLog(t, n, raftnode.LogStoreWAL)
}

// startClusterLog is startCluster with every raft log in logStore.
func startClusterLog(t *testing.T, n int, logStore string) []*testNode {
	t.Helper()
	nodes := []*testNode{startNodeLog(t, "n0", t.TempDir(), "127.0.0.1:0", true, logStore)}
	waitFor(t, "n0 to lead", func() bool { return nodes[0].node.IsLeader() })
	for i := 1; i < n; i++ {
		nd := startNodeLog(t, "n"+string(rune('0'+i)), t.TempDir(), "127.0.0.1:0", false, logStore)
		ctx, cancel := context.WithTimeout(context.Background(), testWait)
		err := nodes[0].node.AddVoter(ctx, nd.id, nd.node.Addr())
		cancel()
		if err != nil {
			t.Fatalf("adding %s: %v", nd.id, err)
		}
		nodes = append(nodes, nd)
	}
	return nodes
}

// waitFor polls cond until it holds, failing the test after testWait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaderOf(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.node != nil && n.node.IsLeader() {
			return n
		}
	}
	return nil
}
