package ops

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/raftnode"
)

// saveFromNode saves a snapshot file of n through the admin service.
func saveFromNode(t *testing.T, n *testNode, path string) *SnapshotFile {
	t.Helper()
	svc := NewService(ServiceConfig{Node: n.node, Store: n.store})
	defer svc.Close()
	sf, err := SaveSnapshotFile(path, func(w io.Writer) error {
		return svc.SaveSnapshot(context.Background(), &SaveSnapshotRequest{}, func(c *SnapshotChunk) error {
			_, err := w.Write(c.Data)
			return err
		})
	})
	if err != nil {
		t.Fatalf("saving snapshot of %s: %v", n.id, err)
	}
	t.Cleanup(func() { sf.Close() })
	return sf
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A snapshot restored into a fresh data dir starts a one-server cluster
// that serves every key at its saved revision and keeps counting from there.
func TestRestoreSnapshotStartsNewCluster(t *testing.T) {
	src := startCluster(t, 1)[0]
	revs := map[string]int64{}
	for _, k := range []string{"/registry/a", "/registry/b", "/registry/c"} {
		revs[k] = src.put(t, k, "value of "+k)
	}
	snap := filepath.Join(t.TempDir(), "backup.snap")
	sf := saveFromNode(t, src, snap)
	src.stop()

	dir := t.TempDir()
	addr := freeAddr(t)
	res, err := RestoreSnapshot(snap, dir, ServerIdentity{NodeName: "restored", RaftAddr: addr})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if res.Snapshot.Index != sf.Header.Index || res.Snapshot.Keys != 3 {
		t.Errorf("restored %+v; want the saved header %+v", res.Snapshot, sf.Header)
	}

	n := startNode(t, "restored", dir, addr, false)
	waitFor(t, "the restored server to lead", n.node.IsLeader)
	for k, rev := range revs {
		if v, got := n.get(t, k); v != "value of "+k || got != rev {
			t.Errorf("%s = %q at revision %d; want %q at %d", k, v, got, "value of "+k, rev)
		}
	}
	if rev := n.put(t, "/registry/d", "new"); rev <= sf.Header.Revision {
		t.Errorf("a write after restore got revision %d, not after the snapshot's %d", rev, sf.Header.Revision)
	}
}

func TestRestoreSnapshotRefuses(t *testing.T) {
	src := startCluster(t, 1)[0]
	src.put(t, "k", "v")
	snap := filepath.Join(t.TempDir(), "backup.snap")
	saveFromNode(t, src, snap)
	id := ServerIdentity{NodeName: "r", RaftAddr: "127.0.0.1:7000"}

	// src's own data dir holds raft state, and src is running on it.
	if _, err := RestoreSnapshot(snap, src.dir, id); err == nil || !strings.Contains(err.Error(), "already holds raft state") {
		t.Errorf("restore over existing raft state: %v; want a refusal", err)
	}
	running := t.TempDir()
	l, err := net.Listen("unix", AdminSocket(running))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := RestoreSnapshot(snap, running, id); err == nil || !strings.Contains(err.Error(), "is running") {
		t.Errorf("restore into a data dir a server answers on: %v; want a refusal", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.snap")
	os.WriteFile(bad, []byte("garbage"), 0o600)
	fresh := t.TempDir()
	if _, err := RestoreSnapshot(bad, fresh, id); err == nil {
		t.Error("restored a damaged file")
	}
	if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
		t.Errorf("a refused restore wrote into the data dir: %v", entries)
	}
	for _, bid := range []ServerIdentity{{RaftAddr: "127.0.0.1:7000"}, {NodeName: "r", RaftAddr: "0.0.0.0:7000"}, {NodeName: "r", RaftAddr: "127.0.0.1:0"}, {NodeName: "r", RaftAddr: "nope"}} {
		if _, err := RestoreSnapshot(snap, t.TempDir(), bid); err == nil {
			t.Errorf("restore with %+v succeeded; want a flag error", bid)
		}
	}
}

// After losing two of three servers for good, cluster-reset on the survivor's
// data dir lets it start alone with all its data, wherever its raft log is.
func TestResetClusterRecoversSurvivor(t *testing.T) {
	for _, store := range []string{raftnode.LogStoreWAL, raftnode.LogStoreBoltDB} {
		t.Run(store, func(t *testing.T) { resetClusterRecoversSurvivor(t, store) })
	}
}

func resetClusterRecoversSurvivor(t *testing.T, logStore string) {
	nodes := startClusterLog(t, 3, logStore)
	leader := leaderOf(nodes)
	rev := leader.put(t, "/registry/kept", "yes")
	survivor := nodes[1]
	waitFor(t, "the write to reach n1", func() bool { return survivor.node.AppliedIndex() >= uint64(rev) })
	addr := survivor.node.Addr()
	for _, n := range nodes {
		n.stop()
	}

	res, err := ResetCluster(survivor.dir, ServerIdentity{NodeName: "n1"})
	if err != nil {
		t.Fatalf("cluster-reset: %v", err)
	}
	if len(res.Previous) != 3 || res.Server.RaftAddr != addr || res.AlreadyAlone {
		t.Errorf("reset result %+v; want 3 previous servers and n1's address %s kept", res, addr)
	}

	n := startNodeLog(t, "n1", survivor.dir, addr, false, logStore)
	waitFor(t, "the survivor to lead alone", n.node.IsLeader)
	if v, got := n.get(t, "/registry/kept"); v != "yes" || got != rev {
		t.Errorf("kept key = %q at revision %d; want yes at %d", v, got, rev)
	}
	n.put(t, "/registry/after", "reset")
	n.stop()

	// A second reset finds nothing to do.
	res, err = ResetCluster(survivor.dir, ServerIdentity{NodeName: "n1"})
	if err != nil || !res.AlreadyAlone {
		t.Errorf("second reset: %+v, %v; want nothing to do", res, err)
	}
}

func TestResetClusterRefuses(t *testing.T) {
	nodes := startCluster(t, 2)
	n := nodes[1]
	// Running: the raft log is locked.
	if _, err := ResetCluster(n.dir, ServerIdentity{NodeName: "n1"}); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("reset of a running server: %v; want a refusal", err)
	}
	n.stop()
	if _, err := ResetCluster(n.dir, ServerIdentity{NodeName: "n7"}); err == nil || !strings.Contains(err.Error(), "n0, n1") {
		t.Errorf("reset with an unknown --node-name: %v; want a refusal listing n0, n1", err)
	}
	if _, err := ResetCluster(t.TempDir(), ServerIdentity{NodeName: "n1"}); err == nil || !strings.Contains(err.Error(), "no raft state") {
		t.Errorf("reset of an empty data dir: %v; want a refusal", err)
	}
	if _, err := ResetCluster(n.dir, ServerIdentity{}); err == nil {
		t.Error("reset without --node-name succeeded")
	}
}
