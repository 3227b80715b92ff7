package ops

import (
	"context"
	"strings"
	"testing"
)

func TestTransferLeaderFromAnyServer(t *testing.T) {
	nodes := startCluster(t, 3)
	clients := map[string]*Client{}
	for _, n := range nodes {
		clients[n.id] = serveAdmin(t, n, nil)
	}
	ctx := context.Background()
	leader := leaderOf(nodes)
	var follower *testNode
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	// Asked on a follower, naming that follower: forwarded to the leader,
	// which hands over to it.
	resp, err := clients[follower.id].TransferLeader(ctx, follower.id)
	if err != nil {
		t.Fatalf("transfer-leader %s run on %s: %v", follower.id, follower.id, err)
	}
	if resp.From != leader.id {
		t.Errorf("transfer answered %+v; want it from %s", resp, leader.id)
	}
	waitFor(t, follower.id+" to lead", func() bool { return follower.node.IsLeader() })
	follower.put(t, "after", "transfer")

	// Without an ID raft picks a follower; run on the old leader, now a follower.
	if _, err := clients[leader.id].TransferLeader(ctx, ""); err != nil {
		t.Fatalf("transfer-leader to any run on %s: %v", leader.id, err)
	}
	waitFor(t, "leadership to leave "+follower.id, func() bool {
		l := leaderOf(nodes)
		return l != nil && l != follower
	})

	refusals := []struct{ id, want string }{
		{"nope", `no server "nope" in the raft configuration`},
	}
	cur := leaderOf(nodes)
	waitFor(t, follower.id+" to learn the new leader", func() bool { _, id := follower.node.Leader(); return id == cur.id })
	refusals = append(refusals, struct{ id, want string }{cur.id, cur.id + " already leads"})
	for _, r := range refusals {
		if _, err := clients[follower.id].TransferLeader(ctx, r.id); err == nil || !strings.Contains(err.Error(), r.want) {
			t.Errorf("transfer-leader %q: %v; want an error containing %q", r.id, err, r.want)
		}
	}
}

func TestClusterStatusWithAServerDown(t *testing.T) {
	nodes := startCluster(t, 3)
	clients := map[string]*Client{}
	for _, n := range nodes {
		clients[n.id] = serveAdmin(t, n, nil)
	}
	ctx := context.Background()
	leader := leaderOf(nodes)
	leader.put(t, "k", strings.Repeat("v", 1000))
	var followers []*testNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	var st *ClusterStatus
	// Followers apply the write a moment after the leader commits it.
	waitFor(t, "every server to apply the write", func() bool {
		var err error
		if st, err = clients[followers[0].id].ClusterStatus(ctx); err != nil {
			t.Fatal(err)
		}
		if len(st.Servers) != 3 {
			return false // the follower has yet to learn the configuration
		}
		for _, r := range st.Servers {
			if r.Status == nil || r.Status.StoreBytes == 0 {
				return false
			}
		}
		return true
	})
	if st.View != leader.id || st.LeaderID != leader.id || len(st.Servers) != 3 {
		t.Fatalf("cluster status from a follower: %+v; want the leader's view of 3 servers", st)
	}
	for _, r := range st.Servers {
		if r.Status == nil || r.Lag == nil || r.Status.StoreBytes <= 0 {
			t.Errorf("healthy cluster: server %s reported %+v (error %q); want its own report with lag and store size", r.ID, r.Status, r.Error)
		}
	}

	dead := followers[1]
	dead.stop()
	waitFor(t, "the leader to see "+dead.id+" fail", func() bool {
		st, err := clients[followers[0].id].ClusterStatus(ctx)
		if err != nil {
			return false
		}
		for _, r := range st.Servers {
			if r.ID == dead.id {
				return r.Status == nil && r.Contact == ContactFailing && strings.Contains(r.Error, "no answer from "+dead.node.Addr())
			}
		}
		return false
	})
	st, _ = clients[leader.id].ClusterStatus(ctx)
	for _, r := range st.Servers {
		if r.ID != dead.id && (r.Status == nil || r.Status.LeaderID != leader.id) {
			t.Errorf("degraded cluster: live server %s reported %+v (error %q); want its report naming leader %s", r.ID, r.Status, r.Error, leader.id)
		}
	}
}
