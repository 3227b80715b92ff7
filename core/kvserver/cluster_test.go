package kvserver

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Every etcd call works on a follower as on the leader: writes and reads
// through raft forwarding, lease keep-alives and TTLs through the leader's
// peer service.
func TestFollowerServesEverything(t *testing.T) {
	nodes := startCluster(t)
	ctx := ctxT(t)
	leader, follower := leaderOf(t, nodes).client(), nodes[2].client()

	g, err := follower.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	put, err := follower.Put(ctx, "/f/k", "v", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	got, err := leader.Get(ctx, "/f/k")
	if err != nil || len(got.Kvs) != 1 || got.Kvs[0].ModRevision != put.Header.Revision {
		t.Fatalf("leader reads the follower's write: %v %+v", err, got)
	}
	// Keep the lease alive through the follower past twice its TTL.
	for i := 0; i < 8; i++ {
		ka, err := follower.KeepAliveOnce(ctx, g.ID)
		if err != nil || ka.TTL != 2 {
			t.Fatalf("keep-alive through a follower: %v %+v", err, ka)
		}
		time.Sleep(500 * time.Millisecond)
	}
	ttl, err := follower.TimeToLive(ctx, g.ID)
	if err != nil || ttl.TTL <= 0 || ttl.TTL > 2 {
		t.Fatalf("TTL through a follower: %v %+v", err, ttl)
	}
	if r, err := nodes[1].client().Get(ctx, "/f/k"); err != nil || len(r.Kvs) != 1 {
		t.Fatalf("key expired although kept alive: %v", err)
	}
	// Left alone, the lease expires on the leader and every member sees it.
	w := follower.Watch(ctx, "/f/k", clientv3.WithRev(put.Header.Revision+1))
	if ev := collect(t, w, 1)[0]; ev.Type != clientv3.EventTypeDelete {
		t.Fatalf("expiry event %v", ev)
	}
}
