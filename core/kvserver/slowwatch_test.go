package kvserver

import (
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Caps small enough that a few hundred writes of 1 KiB pass them.
const (
	testWatchEvents = 50
	testWatchBytes  = 32 << 10
	testStreamBytes = 48 << 10
	testValueBytes  = 1024
)

func startCappedNode(t *testing.T, watchEvents int64) *node {
	return startNode(t, t.TempDir(), func(c *Config) {
		c.HistoryRevisions, c.HistoryBytes = 0, 0 // the tests compact, as kube-apiserver does
		c.WatchQueueEvents = watchEvents
		c.WatchQueueBytes = testWatchBytes
		c.WatchStreamQueueBytes = testStreamBytes
	})
}

// stuckWatch opens a raw watch stream that the test does not read, over a
// connection whose flow-control windows stay at gRPC's 64 KiB minimum (no
// BDP growth), so the server's sends block as a real non-reading client
// makes them block.
func stuckWatch(t *testing.T, n *node, prefix string, start int64) pb.Watch_WatchClient {
	t.Helper()
	conn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := pb.NewWatchClient(conn).Watch(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), StartRevision: start}}})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// readAll collects a clientv3 watch's events until it has want of them or
// the watch ends; it reports the revisions seen and the watch's error.
func readAll(ch clientv3.WatchChan, want int) ([]int64, error) {
	var revs []int64
	for resp := range ch {
		if err := resp.Err(); err != nil {
			return revs, err
		}
		for _, ev := range resp.Events {
			revs = append(revs, ev.Kv.ModRevision)
		}
		if len(revs) >= want {
			return revs, nil
		}
	}
	return revs, fmt.Errorf("watch channel closed after %d events", len(revs))
}

// putN writes n keys under prefix and returns their revisions, checking the
// watch queues against their caps after each write.
func putN(t *testing.T, n *node, cli *clientv3.Client, prefix string, count int, check func()) []int64 {
	t.Helper()
	val := strings.Repeat("v", testValueBytes)
	var revs []int64
	for i := 0; i < count; i++ {
		resp, err := cli.Put(ctxT(t), fmt.Sprintf("%s%05d", prefix, i), val)
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
		check()
	}
	return revs
}

// eventually waits for cond, failing with what after 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxT(t)
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A watcher whose client never reads must not grow the server's memory
// while writes continue: its queue stops at its cap, it then waits holding
// nothing, and once compaction passes it, it is canceled with etcd's
// compacted response (kube-apiserver relists on it). The server and a
// reading watcher on the same keys are unaffected.
func TestSlowWatcherBoundedAndCanceledAsCompacted(t *testing.T) {
	n := startCappedNode(t, testWatchEvents)
	cli := n.client()
	const prefix, writes = "/registry/pods/", 400
	start := n.kv.store.View().Rev() + 1
	stuck := stuckWatch(t, n, prefix, start)
	healthy := cli.Watch(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithRev(start))
	eventually(t, "both watches open", func() bool { return n.kv.Watchers() == 2 })

	// Two watchers, each within its caps (one revision's event of slack).
	maxEvents := int64(2 * (testWatchEvents + 1))
	maxBytes := int64(2*testWatchBytes + 2*(testValueBytes+256))
	var peak WatchQueueStats
	revs := putN(t, n, cli, prefix, writes, func() {
		q := n.kv.WatchQueue()
		peak.Events, peak.Bytes = max(peak.Events, q.Events), max(peak.Bytes, q.Bytes)
		if q.Events > maxEvents || q.Bytes > maxBytes {
			t.Fatalf("watch queues hold %d events, %d bytes; caps allow %d, %d", q.Events, q.Bytes, maxEvents, maxBytes)
		}
	})
	t.Logf("peak queued: %d events, %d bytes", peak.Events, peak.Bytes)

	got, err := readAll(healthy, writes)
	if err != nil {
		t.Fatalf("reading watcher: %v after %d events", err, len(got))
	}
	if fmt.Sprint(got) != fmt.Sprint(revs) {
		t.Fatalf("reading watcher saw revisions %v, want %v", got, revs)
	}
	eventually(t, "the stuck watcher stalls at its cap", func() bool { return n.kv.WatchQueue().Stalled == 1 })
	if q := n.kv.WatchQueue(); q.Events > testWatchEvents+1 {
		t.Fatalf("stuck watcher holds %d queued events, cap %d", q.Events, testWatchEvents)
	}

	// Compaction passes the stuck watcher: the server cancels it.
	compactRev := revs[len(revs)-1]
	if _, err := cli.Compact(ctxT(t), compactRev); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stuck watcher canceled", func() bool {
		return n.kv.WatchQueue().Compacted == 1 && n.kv.Watchers() == 1
	})
	if q := n.kv.WatchQueue(); q.Stalled != 0 {
		t.Fatalf("%d watchers still stalled after the cancel", q.Stalled)
	}

	// The client, reading at last, sees its events in order without gaps up
	// to where it fell behind, then etcd's compacted cancel.
	next := start
	for {
		resp, err := stuck.Recv()
		if err != nil {
			t.Fatalf("stuck stream: %v", err)
		}
		if resp.Created {
			continue
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision < next {
				t.Fatalf("event at revision %d after %d: out of order", ev.Kv.ModRevision, next)
			}
			if want := revs[indexOf(revs, next)]; ev.Kv.ModRevision != want {
				t.Fatalf("event at revision %d, want %d: a gap", ev.Kv.ModRevision, want)
			}
			next = ev.Kv.ModRevision + 1
		}
		if resp.Canceled {
			if resp.CompactRevision != compactRev {
				t.Fatalf("canceled with CompactRevision %d, want %d (reason %q)", resp.CompactRevision, compactRev, resp.CancelReason)
			}
			cresp := clientv3.WatchResponse{Header: resp.Header, CompactRevision: resp.CompactRevision, Canceled: true, CancelReason: resp.CancelReason}
			if cresp.Err() != rpctypes.ErrCompacted {
				t.Fatalf("clientv3 reports the cancel as %v, want %v", cresp.Err(), rpctypes.ErrCompacted)
			}
			break
		}
	}
	if next >= compactRev {
		t.Fatalf("the stuck watcher received every event up to %d: it never fell behind", next-1)
	}

	// The server serves on; the reading watcher still gets events.
	if _, err := cli.Put(ctxT(t), prefix+"after", "x"); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(healthy, 1); err != nil || len(got) != 1 {
		t.Fatalf("reading watcher after the cancel: %v, %v", got, err)
	}
	eventually(t, "queues empty", func() bool { q := n.kv.WatchQueue(); return q.Events == 0 && q.Bytes == 0 })
}

// indexOf finds the first of revs at or after rev.
func indexOf(revs []int64, rev int64) int {
	for i, r := range revs {
		if r >= rev {
			return i
		}
	}
	return len(revs) - 1
}

// A watcher that reads is never canceled by the caps: with a cap of one
// queued event it stalls on nearly every write, and still receives every
// event in order, also while the history it has already received is
// compacted under it.
func TestReadingWatcherNeverCanceledByCaps(t *testing.T) {
	n := startCappedNode(t, 1)
	cli := n.client()
	const prefix, writes = "/registry/configmaps/", 400
	start := n.kv.store.View().Rev() + 1
	ch := cli.Watch(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithPrevKV())
	eventually(t, "watch open", func() bool { return n.kv.Watchers() == 1 })

	type result struct {
		revs []int64
		err  error
	}
	done := make(chan result, 1)
	seen := make(chan int64, writes)
	go func() {
		var revs []int64
		for resp := range ch {
			if err := resp.Err(); err != nil {
				done <- result{revs, err}
				return
			}
			for _, ev := range resp.Events {
				revs = append(revs, ev.Kv.ModRevision)
				seen <- ev.Kv.ModRevision
			}
			if len(revs) == writes {
				done <- result{revs, nil}
				return
			}
		}
		done <- result{revs, fmt.Errorf("watch closed")}
	}()
	var compacted int64
	revs := putN(t, n, cli, prefix, writes, func() {
		q := n.kv.WatchQueue()
		if q.Events > 2 { // one event queued, one revision of slack
			t.Fatalf("watch queue holds %d events, cap 1", q.Events)
		}
		// Compact what the watcher has already received.
		for {
			select {
			case r := <-seen:
				compacted = r
				continue
			default:
			}
			break
		}
		if compacted > n.kv.store.View().CompactRev() {
			if _, err := cli.Compact(ctxT(t), compacted); err != nil {
				t.Fatal(err)
			}
		}
	})
	res := <-done
	if res.err != nil {
		t.Fatalf("reading watcher ended: %v after %d events", res.err, len(res.revs))
	}
	if fmt.Sprint(res.revs) != fmt.Sprint(revs) {
		t.Fatalf("watcher saw revisions %v, want %v", res.revs, revs)
	}
	if c := n.kv.WatchQueue().Compacted; c != 0 {
		t.Fatalf("%d watches canceled as compacted", c)
	}
}

// Several watches on one stream that is not read share the stream's cap:
// together they queue no more than it allows, and every one of them stalls.
func TestSlowStreamCapSharedByItsWatches(t *testing.T) {
	n := startCappedNode(t, testWatchEvents)
	cli := n.client()
	const prefix, writes, watches = "/registry/secrets/", 200, 3
	start := n.kv.store.View().Rev() + 1
	stuck := stuckWatch(t, n, prefix, start)
	for i := 1; i < watches; i++ {
		err := stuck.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
			Key: []byte(prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(prefix)), StartRevision: start}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every watch open", func() bool { return n.kv.Watchers() == watches })
	// The stream's cap, passed by at most one revision's event per watch.
	maxBytes := int64(testStreamBytes + watches*(testValueBytes+256))
	putN(t, n, cli, prefix, writes, func() {
		if q := n.kv.WatchQueue(); q.Bytes > maxBytes {
			t.Fatalf("one stream holds %d queued bytes; its cap allows %d", q.Bytes, maxBytes)
		}
	})
	eventually(t, "every watch of the stream stalls", func() bool { return n.kv.WatchQueue().Stalled == watches })
	if q := n.kv.WatchQueue(); q.Bytes > maxBytes || q.Bytes < testWatchBytes {
		t.Fatalf("stream holds %d queued bytes, want between one watch's cap %d and the stream's %d", q.Bytes, testWatchBytes, maxBytes)
	}
}
