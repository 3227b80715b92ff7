package kvserver

import (
	"runtime"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

// TestFollowerKeepAlivesReuseOneStream renews a lease many times over one
// client stream on a follower: the goroutines of the process (every member
// runs in it) must not grow with the number of renewals, as they did when
// each renewal opened its own stream to the leader.
func TestFollowerKeepAlivesReuseOneStream(t *testing.T) {
	nodes := startCluster(t)
	ctx := ctxT(t)
	leader := leaderOf(t, nodes)
	var follower *node
	for _, n := range nodes {
		if n != leader {
			follower = n
			break
		}
	}
	cli := follower.client()
	g, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	renew := func() {
		t.Helper()
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(g.ID)}); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil || resp.TTL != 30 {
			t.Fatalf("keep-alive through a follower: %v %+v", err, resp)
		}
	}
	renew() // opens the forwarded stream
	before := runtime.NumGoroutine()
	for range 200 {
		renew()
	}
	if grown := runtime.NumGoroutine() - before; grown > 20 {
		t.Fatalf("%d more goroutines after 200 renewals on one stream", grown)
	}
}
