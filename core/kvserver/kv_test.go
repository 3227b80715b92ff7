package kvserver

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestPutGetRevisions(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)

	p1, err := c.Put(ctx, "/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.Put(ctx, "/a", "2", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if p2.Header.Revision <= p1.Header.Revision {
		t.Fatalf("revisions must increase: %d then %d", p1.Header.Revision, p2.Header.Revision)
	}
	if p2.PrevKv == nil || string(p2.PrevKv.Value) != "1" {
		t.Fatalf("prev kv = %v, want value 1", p2.PrevKv)
	}
	g, err := c.Get(ctx, "/a")
	if err != nil {
		t.Fatal(err)
	}
	kv := g.Kvs[0]
	if string(kv.Value) != "2" || kv.Version != 2 || kv.CreateRevision != p1.Header.Revision || kv.ModRevision != p2.Header.Revision {
		t.Fatalf("got %+v", kv)
	}
	if g.Header.Revision != p2.Header.Revision || g.Header.ClusterId != 42 || g.Header.MemberId != MemberID("n1") {
		t.Fatalf("header %+v", g.Header)
	}
	old, err := c.Get(ctx, "/a", clientv3.WithRev(p1.Header.Revision))
	if err != nil {
		t.Fatal(err)
	}
	if string(old.Kvs[0].Value) != "1" {
		t.Fatalf("read at revision %d: %q", p1.Header.Revision, old.Kvs[0].Value)
	}
	if _, err := c.Get(ctx, "/a", clientv3.WithRev(p2.Header.Revision+1000)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("future revision: got %v", err)
	}
	for i := 0; i < 5; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/p/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.Get(ctx, "/p/", clientv3.WithPrefix(), clientv3.WithLimit(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Kvs) != 2 || !page.More || page.Count != 5 {
		t.Fatalf("limit 2 of 5: kvs=%d more=%v count=%d", len(page.Kvs), page.More, page.Count)
	}
	cnt, err := c.Get(ctx, "/p/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || cnt.Count != 5 || len(cnt.Kvs) != 0 {
		t.Fatalf("count only: %v %+v", err, cnt)
	}
	serial, err := c.Get(ctx, "/a", clientv3.WithSerializable())
	if err != nil || string(serial.Kvs[0].Value) != "2" {
		t.Fatalf("serializable get: %v", err)
	}
	del, err := c.Delete(ctx, "/p/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 5 || len(del.PrevKvs) != 5 {
		t.Fatalf("delete prefix: %v %+v", err, del)
	}
}

func TestTxnCompareAndSwap(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)
	put, err := c.Put(ctx, "/cas", "v1")
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision

	// kube-apiserver's GuaranteedUpdate: swap if mod revision matches, else read.
	swap := func(expect int64, val string) *clientv3.TxnResponse {
		resp, err := c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision("/cas"), "=", expect)).
			Then(clientv3.OpPut("/cas", val)).
			Else(clientv3.OpGet("/cas")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	ok := swap(rev, "v2")
	if !ok.Succeeded {
		t.Fatal("swap with the current mod revision must succeed")
	}
	stale := swap(rev, "v3")
	if stale.Succeeded {
		t.Fatal("swap with a stale mod revision must fail")
	}
	cur := stale.Responses[0].GetResponseRange().Kvs[0]
	if string(cur.Value) != "v2" || cur.ModRevision != ok.Header.Revision {
		t.Fatalf("else branch read %+v", cur)
	}
	if stale.Header.Revision != ok.Header.Revision {
		t.Fatalf("a failed txn must not change the revision: %d vs %d", stale.Header.Revision, ok.Header.Revision)
	}

	// Create-if-absent.
	create, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("/new"), "=", 0)).Then(clientv3.OpPut("/new", "x")).Commit()
	if err != nil || !create.Succeeded {
		t.Fatalf("create if absent: %v", err)
	}
	again, err := c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision("/new"), "=", 0)).Then(clientv3.OpPut("/new", "y")).Commit()
	if err != nil || again.Succeeded {
		t.Fatalf("second create must fail: %v %+v", err, again)
	}
	// Duplicate keys in one branch are refused like etcd.
	_, err = c.Txn(ctx).Then(clientv3.OpPut("/d", "1"), clientv3.OpPut("/d", "2")).Commit()
	if !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Fatalf("duplicate key: got %v", err)
	}
}

func TestRequestValidation(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.MaxRequestBytes = 64 * 1024; c.MaxTxnOps = 4 })
	c, ctx := n.client(), ctxT(t)
	if _, err := c.Put(ctx, "/big", strings.Repeat("x", 70*1024)); !errors.Is(err, rpctypes.ErrRequestTooLarge) {
		t.Fatalf("too large: got %v", err)
	}
	if _, err := c.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Fatalf("empty key: got %v", err)
	}
	ops := []clientv3.Op{}
	for i := 0; i < 5; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprint(i), "v"))
	}
	if _, err := c.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Fatalf("too many ops: got %v", err)
	}
	if _, err := c.Put(ctx, "/k", "v", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("unknown lease: got %v", err)
	}
	if _, err := c.Put(ctx, "/k", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Fatalf("ignore value on missing key: got %v", err)
	}
	// The server is still healthy after the refusals.
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFromOldRevisionAndCompaction(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)
	var revs []int64
	for i := 0; i < 10; i++ {
		r, err := c.Put(ctx, "/w/k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	if _, err := c.Put(ctx, "/other", "x"); err != nil {
		t.Fatal(err)
	}
	// Replay from the third write: exactly writes 2..9, in order, with prev kv.
	wc := c.Watch(ctx, "/w/", clientv3.WithPrefix(), clientv3.WithRev(revs[2]), clientv3.WithPrevKV())
	got := collect(t, wc, 8)
	for i, ev := range got {
		want := fmt.Sprint(i + 2)
		if string(ev.Kv.Value) != want || ev.Kv.ModRevision != revs[i+2] {
			t.Fatalf("event %d: %s@%d, want %s@%d", i, ev.Kv.Value, ev.Kv.ModRevision, want, revs[i+2])
		}
		if ev.PrevKv == nil || string(ev.PrevKv.Value) != fmt.Sprint(i+1) {
			t.Fatalf("event %d prev kv %v", i, ev.PrevKv)
		}
	}
	// New writes keep flowing on the same watch, deletes included.
	if _, err := c.Delete(ctx, "/w/k"); err != nil {
		t.Fatal(err)
	}
	if ev := collect(t, wc, 1)[0]; ev.Type != mvccpb.DELETE || string(ev.Kv.Key) != "/w/k" {
		t.Fatalf("delete event %+v", ev)
	}

	if _, err := c.Compact(ctx, revs[5]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compact(ctx, revs[4]); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compacting below the compacted revision: got %v", err)
	}
	if _, err := c.Get(ctx, "/w/k", clientv3.WithRev(revs[4])); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("read below compaction: got %v", err)
	}
	// Watching from the compaction point still works; below it is refused.
	ok := collect(t, c.Watch(ctx, "/w/k", clientv3.WithRev(revs[5])), 6) // 5..9 and the delete
	if string(ok[0].Kv.Value) != "5" || ok[5].Type != mvccpb.DELETE {
		t.Fatalf("watch at compact revision: %+v", ok[0])
	}
	wr := <-c.Watch(ctx, "/w/k", clientv3.WithRev(revs[3]))
	if wr.CompactRevision != revs[5] || !errors.Is(wr.Err(), rpctypes.ErrCompacted) {
		t.Fatalf("watch below compaction: compactRev=%d err=%v", wr.CompactRevision, wr.Err())
	}
}

func TestWatchFiltersAndProgress(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)
	noPut := c.Watch(ctx, "/f", clientv3.WithFilterPut())
	all := c.Watch(ctx, "/f")
	if _, err := c.Put(ctx, "/f", "1"); err != nil {
		t.Fatal(err)
	}
	d, err := c.Delete(ctx, "/f")
	if err != nil {
		t.Fatal(err)
	}
	if evs := collect(t, all, 2); evs[0].Type != mvccpb.PUT || evs[1].Type != mvccpb.DELETE {
		t.Fatalf("unfiltered: %v", evs)
	}
	if evs := collect(t, noPut, 1); evs[0].Type != mvccpb.DELETE {
		t.Fatalf("NOPUT watcher got %v", evs)
	}
	// RequestProgress answers with a revision covering every sent event.
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case wr := <-all:
			if wr.IsProgressNotify() {
				if wr.Header.Revision < d.Header.Revision {
					t.Fatalf("progress revision %d is behind the last write %d", wr.Header.Revision, d.Header.Revision)
				}
				return
			}
			if len(wr.Events) > 0 {
				t.Fatalf("unexpected events %v", wr.Events)
			}
		case <-deadline:
			t.Fatal("no progress notification")
		}
	}
}

func TestLeasesExpireTheirKeys(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)
	g, err := c.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/lease/a", "x", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	ttl, err := c.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 1 || len(ttl.Keys) != 1 || !bytes.Equal(ttl.Keys[0], []byte("/lease/a")) {
		t.Fatalf("time to live: %v %+v", err, ttl)
	}
	w := c.Watch(ctx, "/lease/a")
	ev := collect(t, w, 1)[0]
	if ev.Type != mvccpb.DELETE {
		t.Fatalf("expiry must delete the key, got %v", ev)
	}
	if r, _ := c.Get(ctx, "/lease/a"); len(r.Kvs) != 0 {
		t.Fatal("key still present after lease expiry")
	}
	if ttl, _ := c.TimeToLive(ctx, g.ID); ttl.TTL != -1 {
		t.Fatalf("expired lease TTL = %d, want -1", ttl.TTL)
	}

	// A kept-alive lease outlives its TTL; a revoked one takes its keys.
	// TTL 2s renewed every 500ms for 4s: the key outlives twice its TTL,
	// with a 1.5s margin per renewal for a busy machine.
	k, err := c.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/lease/b", "x", clientv3.WithLease(k.ID)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8; i++ {
		if _, err := c.KeepAliveOnce(ctx, k.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if r, _ := c.Get(ctx, "/lease/b"); len(r.Kvs) != 1 {
		t.Fatal("kept-alive key expired")
	}
	if _, err := c.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Get(ctx, "/lease/b"); len(r.Kvs) != 0 {
		t.Fatal("revoke left the key")
	}
	if _, err := c.Revoke(ctx, k.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
}

func TestRestartKeepsDataAndRevisions(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	c, ctx := n.client(), ctxT(t)
	var last *clientv3.PutResponse
	for i := 0; i < 50; i++ {
		r, err := c.Put(ctx, fmt.Sprintf("/r/%02d", i), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r
	}
	before, err := c.Get(ctx, "/r/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	n2 := n.restart()
	c2 := n2.client()
	after, err := c2.Get(ctx, "/r/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != last.Header.Revision || len(after.Kvs) != 50 {
		t.Fatalf("after restart: rev %d (want %d), %d keys", after.Header.Revision, last.Header.Revision, len(after.Kvs))
	}
	for i := range before.Kvs {
		if before.Kvs[i].String() != after.Kvs[i].String() {
			t.Fatalf("key %d changed across restart: %v vs %v", i, before.Kvs[i], after.Kvs[i])
		}
	}
	// History survives too: a watch from an old revision replays it.
	evs := collect(t, c2.Watch(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(before.Kvs[10].ModRevision)), 40)
	if string(evs[0].Kv.Key) != "/r/10" {
		t.Fatalf("replay after restart starts at %s", evs[0].Kv.Key)
	}
}

func TestStatusAndHash(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	c, ctx := n.client(), ctxT(t)
	if _, err := c.Put(ctx, "/s", "v"); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx, n.addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != DefaultConfig().Version || st.Leader != MemberID("n1") || st.RaftIndex == 0 {
		t.Fatalf("status %+v", st)
	}
	h1, err := c.HashKV(ctx, n.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/s", "w"); err != nil {
		t.Fatal(err)
	}
	h2, err := c.HashKV(ctx, n.addr, 0)
	if err != nil || h1.Hash == h2.Hash {
		t.Fatalf("hash must change with the state: %v %d %d", err, h1.Hash, h2.Hash)
	}
	ml, err := c.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 {
		t.Fatalf("member list: %v %+v", err, ml)
	}
}

// collect reads n events from a watch channel or fails.
func collect(t *testing.T, wc clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var out []*clientv3.Event
	deadline := time.After(15 * time.Second)
	for len(out) < n {
		select {
		case wr, ok := <-wc:
			if !ok {
				t.Fatalf("watch closed after %d of %d events", len(out), n)
			}
			if err := wr.Err(); err != nil {
				t.Fatalf("watch error after %d events: %v", len(out), err)
			}
			out = append(out, wr.Events...)
		case <-deadline:
			t.Fatalf("got %d of %d events", len(out), n)
		}
	}
	if len(out) > n {
		t.Fatalf("got %d events, want %d: %v", len(out), n, out)
	}
	return out
}
