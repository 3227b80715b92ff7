package ops

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// serveAdmin serves n's admin service on its data dir's admin socket, as
// core/server does, and returns a client of it.
func serveAdmin(t *testing.T, n *testNode, gossip func() map[string]string) *Client {
	t.Helper()
	svc := NewService(ServiceConfig{Node: n.node, Store: n.store, Gossip: gossip})
	l, err := net.Listen("unix", AdminSocket(n.dir))
	if err != nil {
		t.Fatal(err)
	}
	g := NewGRPCServer(svc)
	go g.Serve(l)
	// Other servers forward leader-only requests over the raft port.
	go g.Serve(n.node.AdminListener())
	c, err := Dial(n.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); g.Stop(); svc.Close() })
	return c
}

func peerByID(peers []Peer, id string) Peer {
	for _, p := range peers {
		if p.ID == id {
			return p
		}
	}
	return Peer{}
}

func TestPeersAndRemovePeer(t *testing.T) {
	nodes := startCluster(t, 3)
	leader := leaderOf(nodes)
	var followers []*testNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	gossip := map[string]string{leader.id: "alive", followers[0].id: "alive", followers[1].id: "alive"}
	lc := serveAdmin(t, leader, func() map[string]string { return gossip })
	fc := serveAdmin(t, followers[0], nil)
	ctx := context.Background()

	resp, err := lc.Peers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Self != leader.id || resp.LeaderID != leader.id || len(resp.Peers) != 3 {
		t.Fatalf("peers from the leader: %+v", resp)
	}
	for _, p := range resp.Peers {
		want := ContactOK
		if p.ID == leader.id {
			want = ContactSelf
		}
		if !p.Voter || p.Leader != (p.ID == leader.id) || p.Contact != want || p.Gossip != "alive" {
			t.Errorf("leader's view of %s: %+v; want a voter, contact %s, gossip alive", p.ID, p, want)
		}
	}
	waitFor(t, "the follower to hear from the leader", func() bool {
		resp, err := fc.Peers(ctx)
		return err == nil && len(resp.Peers) == 3 && peerByID(resp.Peers, leader.id).Contact == ContactHeard
	})
	resp, _ = fc.Peers(ctx)
	if p := peerByID(resp.Peers, followers[1].id); p.Contact != ContactUnknown {
		t.Errorf("a follower's view of another follower: %+v; want contact unknown", p)
	}

	refusals := []struct {
		name   string
		client *Client
		id     string
		want   string
	}{
		{"unknown id", lc, "nope", "servers: n0, n1, n2"},
		{"forwarded from a follower: alive", fc, followers[1].id, "forwarded to the leader at " + leader.node.Addr() + ": " + followers[1].id + " is alive in the gossip pool"},
		{"forwarded from a follower: the leader", fc, leader.id, "stop it first"},
		{"the leader itself", lc, leader.id, "stop it first"},
		{"alive in gossip", lc, followers[0].id, "alive in the gossip pool"},
	}
	for _, r := range refusals {
		if _, err := r.client.RemovePeer(ctx, r.id); err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("%s: remove-peer %s: %v; want an error containing %q", r.name, r.id, err, r.want)
		}
	}

	// One follower dies. Removing the other, healthy one would leave the
	// leader and a dead voter: no quorum. Removing the dead one is fine.
	dead, healthy := followers[0], followers[1]
	dead.stop()
	gossip = map[string]string{leader.id: "alive", dead.id: "failed", healthy.id: "failed"}
	waitFor(t, "the leader to see its heartbeats to "+dead.id+" fail", func() bool {
		resp, err := lc.Peers(ctx)
		return err == nil && peerByID(resp.Peers, dead.id).Contact == ContactFailing
	})
	if _, err := lc.RemovePeer(ctx, healthy.id); err == nil || !strings.Contains(err.Error(), "remove the unreachable voters ("+dead.id+") first") {
		t.Errorf("removing a healthy voter while another is dead: %v; want a quorum refusal", err)
	}
	// Run on the healthy follower: it forwards to the leader.
	hc := serveAdmin(t, healthy, nil)
	out, err := hc.RemovePeer(ctx, dead.id)
	if err != nil {
		t.Fatalf("removing the dead voter from a follower: %v", err)
	}
	if len(out.Peers) != 2 || peerByID(out.Peers, dead.id).ID != "" {
		t.Errorf("after removal: %+v; want %s gone", out.Peers, dead.id)
	}
	leader.put(t, "still", "writable")
}

func TestSaveSnapshotOverSocket(t *testing.T) {
	n := startCluster(t, 1)[0]
	for _, k := range []string{"a", "b"} {
		n.put(t, k, strings.Repeat(k, 600<<10)) // more than one chunk
	}
	c := serveAdmin(t, n, nil)
	path := filepath.Join(t.TempDir(), "s.snap")
	var buf bytes.Buffer
	if err := c.SaveSnapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := OpenSnapshotFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	st, err := got.Decode()
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Keys != 2 || st.View().Hash() != n.store.View().Hash() {
		t.Errorf("snapshot over the socket: header %+v; want both keys and the server's state", got.Header)
	}
}

func TestDialExplainsMissingServer(t *testing.T) {
	dir := t.TempDir()
	if _, err := Dial(dir); err == nil || !strings.Contains(err.Error(), "no server is running on --data-dir") {
		t.Errorf("dial of an empty data dir: %v", err)
	}
	// A socket left behind by a crashed server.
	l, err := net.Listen("unix", AdminSocket(dir))
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Peers(context.Background()); err == nil || !strings.Contains(err.Error(), "no server answers") {
		t.Errorf("peers on a stale socket: %v", err)
	}
}
