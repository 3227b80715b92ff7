package kvserver

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/fsm"
)

func fencedCtx(ctx context.Context, term string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, FenceTermMetadata, term)
}

// A write fenced to term N commits only in term N: through a follower
// while N's leader leads, yes; once a new leader has been elected, a write
// still fenced to N (a deposed leader's plugin, its server not yet aware)
// is refused by every server, whichever one it is forwarded through.
func TestFencedWriteCommitsOnlyInItsTerm(t *testing.T) {
	nodes := startCluster(t)
	ctx := ctxT(t)
	leader := leaderOf(t, nodes)
	termN := leader.raft.Term()
	term := strconv.FormatUint(termN, 10)
	var follower *node
	for _, n := range nodes {
		if n != leader {
			follower = n
		}
	}
	if _, err := follower.client().Put(fencedCtx(ctx, term), "/fence/a", "1"); err != nil {
		t.Fatalf("write fenced to the current term %s, through a follower: %v", term, err)
	}

	leader.stop()
	var rest []*node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	next := leaderOf(t, rest)
	if next.raft.Term() <= termN {
		t.Fatalf("no new term after the leader stopped (still %d)", termN)
	}
	before, err := next.client().Get(ctx, "/fence/a")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		_, err := n.client().Put(fencedCtx(ctx, term), "/fence/a", "stale")
		if status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("write fenced to deposed term %s through %s: err %v, want FailedPrecondition", term, n.raft.ID(), err)
		}
	}
	after, err := next.client().Get(ctx, "/fence/a")
	if err != nil {
		t.Fatal(err)
	}
	if string(after.Kvs[0].Value) != "1" || after.Header.Revision != before.Header.Revision {
		t.Fatalf("a fenced write changed the store: value %q rev %d, before rev %d", after.Kvs[0].Value, after.Header.Revision, before.Header.Revision)
	}
	// Unfenced writes, and writes fenced to the new term, go on.
	newTerm := strconv.FormatUint(next.raft.Term(), 10)
	if _, err := rest[0].client().Put(fencedCtx(ctx, newTerm), "/fence/a", "2"); err != nil {
		t.Fatalf("write fenced to the new term %s: %v", newTerm, err)
	}
	if _, err := rest[0].client().Put(ctx, "/fence/b", "x"); err != nil {
		t.Fatalf("unfenced write: %v", err)
	}
}

func TestFenceMetadataErrors(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	ctx := ctxT(t)
	c := n.client()
	for _, bad := range []string{"", "0", "-3", "term"} {
		if _, err := c.Put(fencedCtx(ctx, bad), "/k", "v"); status.Code(err) != codes.InvalidArgument {
			t.Errorf("fence term %q: err %v, want InvalidArgument", bad, err)
		}
	}
	two := metadata.AppendToOutgoingContext(ctx, FenceTermMetadata, "7", FenceTermMetadata, "8")
	if _, err := c.Put(two, "/k", "v"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("two fence terms: err %v, want InvalidArgument", err)
	}
}

// Until every server can apply fenced commands (a rolling upgrade), writes
// with a fence term go unfenced rather than fail; the gate is asked again
// on each such write until it says yes, and its yes is kept.
func TestFenceFollowsTheFeatureGate(t *testing.T) {
	var asked, allow atomic.Int32
	gate := func(typ byte) error {
		if typ != fsm.CmdFenced {
			return nil
		}
		asked.Add(1)
		if allow.Load() == 0 {
			return status.Error(codes.FailedPrecondition, "a server is at level 2")
		}
		return nil
	}
	n := startNode(t, t.TempDir(), func(c *Config) { c.CommandGate = gate })
	ctx := ctxT(t)
	// A term that is surely not the current one: fenced, it is refused.
	stale := strconv.FormatUint(n.raft.Term()+100, 10)
	for range 2 {
		if _, err := n.client().Put(fencedCtx(ctx, stale), "/k", "v", clientv3.WithPrevKV()); err != nil {
			t.Fatalf("write while the gate refuses fencing: %v", err)
		}
	}
	if got := asked.Load(); got != 2 {
		t.Errorf("gate asked %d times for 2 writes while it refused; want every time", got)
	}
	allow.Store(1)
	for range 3 {
		if _, err := n.client().Put(fencedCtx(ctx, stale), "/k", "v"); status.Code(err) != codes.FailedPrecondition {
			t.Fatalf("write fenced to another term once the gate allows fencing: err %v, want FailedPrecondition", err)
		}
	}
	if got := asked.Load(); got != 3 {
		t.Errorf("gate asked %d times in all; its yes is kept for %v, so want 3", got, fenceGateRecheck)
	}
}
