package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/keelson/keelson/e2e/harness"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// event is a watch event as a user compares it.
type event struct {
	Type  mvccpb.Event_EventType
	Key   string
	Value string
	Mod   int64
}

func (e event) String() string {
	return fmt.Sprintf("%s %s=%q@%d", e.Type, e.Key, e.Value, e.Mod)
}

// keyValue is the part of a stored key that must survive a crash unchanged.
type keyValue struct {
	Key            string
	Value          string
	CreateRevision int64
	ModRevision    int64
	Version        int64
	Lease          int64
}

func keyValues(kvs []*mvccpb.KeyValue) []keyValue {
	out := make([]keyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = keyValue{string(kv.Key), string(kv.Value), kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease}
	}
	return out
}

// TestStoreSurvivesKill writes through the etcd API of a store-only server,
// kills it with SIGKILL right after the writes are acknowledged, restarts it
// on the same data dir and checks that nothing acknowledged was lost or
// renumbered, that history replays, and that leases still expire; with each
// raft log store.
func TestStoreSurvivesKill(t *testing.T) {
	for _, store := range []string{"wal", "boltdb"} {
		t.Run(store, func(t *testing.T) { storeSurvivesKill(t, store) })
	}
}

func storeSurvivesKill(t *testing.T, logStore string) {
	s := harness.StartServer(t, harness.ServerOptions{DisableAPIServer: true, Args: []string{"--raft-log-store", logStore}})
	cli := s.Etcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	const prefix = "/e2e/"
	var history []event
	put := func(key, value string, opts ...clientv3.OpOption) int64 {
		t.Helper()
		resp, err := cli.Put(ctx, prefix+key, value, opts...)
		if err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
		history = append(history, event{mvccpb.PUT, prefix + key, value, resp.Header.Revision})
		return resp.Header.Revision
	}
	firstRev := put("k00", "v1")
	for i := 1; i < 10; i++ {
		put(fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	put("k00", "v2")
	del, err := cli.Delete(ctx, prefix+"k01")
	if err != nil || del.Deleted != 1 {
		t.Fatalf("delete k01: deleted %v, err %v", del, err)
	}
	history = append(history, event{mvccpb.DELETE, prefix + "k01", "", del.Header.Revision})
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(prefix+"k02"), "!=", 0)).
		Then(clientv3.OpPut(prefix+"t1", "a"), clientv3.OpPut(prefix+"t2", "b")).Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("txn: %v (succeeded %v)", err, txn != nil && txn.Succeeded)
	}
	history = append(history,
		event{mvccpb.PUT, prefix + "t1", "a", txn.Header.Revision},
		event{mvccpb.PUT, prefix + "t2", "b", txn.Header.Revision})

	// A lease long enough to outlive the restart, short enough to wait for.
	const leaseTTL = 15
	lease, err := cli.Grant(ctx, leaseTTL)
	if err != nil {
		t.Fatalf("lease grant: %v", err)
	}
	put("lease/a", "x", clientv3.WithLease(lease.ID))
	lastRev := put("lease/b", "y", clientv3.WithLease(lease.ID))

	before, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get before kill: %v", err)
	}
	if before.Header.Revision != lastRev {
		t.Fatalf("header revision %d after the last write at %d", before.Header.Revision, lastRev)
	}

	s.RestartAfterKill(t)

	after, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if got, want := keyValues(after.Kvs), keyValues(before.Kvs); !slices.Equal(got, want) {
		t.Errorf("keys after kill -9 and restart differ:\n got %+v\nwant %+v", got, want)
	}
	if after.Header.Revision != before.Header.Revision {
		t.Errorf("header revision after restart is %d, was %d", after.Header.Revision, before.Header.Revision)
	}

	t.Run("watch replays history", func(t *testing.T) {
		wctx, wcancel := context.WithTimeout(ctx, time.Minute)
		defer wcancel()
		got := collectEvents(t, cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(firstRev)), len(history))
		if !slices.Equal(got, history) {
			t.Errorf("watch from revision %d after restart:\n got %v\nwant %v", firstRev, got, history)
		}
	})

	t.Run("lease expires after restart", func(t *testing.T) {
		ttl, err := cli.TimeToLive(ctx, lease.ID)
		if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != leaseTTL {
			t.Fatalf("lease %x after restart: %+v, err %v; want alive with granted TTL %d", lease.ID, ttl, err, leaseTTL)
		}
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer wcancel()
		// The keys go when the lease expires, as deletions after lastRev.
		got := collectEvents(t, cli.Watch(wctx, prefix+"lease/", clientv3.WithPrefix(), clientv3.WithRev(lastRev+1)), 2)
		for _, e := range got {
			if e.Type != mvccpb.DELETE || e.Mod <= lastRev {
				t.Errorf("event %v after lease expiry, want a DELETE after revision %d", e, lastRev)
			}
		}
		left, err := cli.Get(ctx, prefix+"lease/", clientv3.WithPrefix())
		if err != nil || len(left.Kvs) != 0 {
			t.Errorf("keys of the expired lease: %v, err %v; want none", keyValuesOf(left), err)
		}
		ttl, err = cli.TimeToLive(ctx, lease.ID)
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
		case err != nil:
			t.Errorf("TimeToLive of the expired lease: %v", err)
		case ttl.TTL != -1:
			t.Errorf("TimeToLive of the expired lease: TTL %d, want -1 (gone)", ttl.TTL)
		}
		still, err := cli.Get(ctx, prefix+"k00")
		if err != nil || len(still.Kvs) != 1 || string(still.Kvs[0].Value) != "v2" {
			t.Errorf("k00 after lease expiry: %v, err %v; want v2", keyValuesOf(still), err)
		}
	})

	t.Run("SIGTERM and restart", func(t *testing.T) {
		before, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(); err != nil {
			t.Errorf("SIGTERM: want a clean exit, got %v", err)
		}
		s.Start(t)
		after, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("get after a graceful restart: %v", err)
		}
		if got, want := keyValues(after.Kvs), keyValues(before.Kvs); !slices.Equal(got, want) {
			t.Errorf("keys after SIGTERM and restart differ:\n got %+v\nwant %+v", got, want)
		}
		if after.Header.Revision != before.Header.Revision {
			t.Errorf("header revision after a graceful restart is %d, was %d", after.Header.Revision, before.Header.Revision)
		}
		if _, err := cli.Put(ctx, prefix+"after-restart", "ok"); err != nil {
			t.Errorf("put after a graceful restart: %v", err)
		}
	})
}

func keyValuesOf(r *clientv3.GetResponse) []keyValue {
	if r == nil {
		return nil
	}
	return keyValues(r.Kvs)
}

// collectEvents reads n events from a watch, failing on a watch error or if
// the watch ends first.
func collectEvents(t *testing.T, wc clientv3.WatchChan, n int) []event {
	t.Helper()
	var got []event
	for resp := range wc {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v (after %v)", err, got)
		}
		for _, e := range resp.Events {
			got = append(got, event{e.Type, string(e.Kv.Key), string(e.Kv.Value), e.Kv.ModRevision})
		}
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("watch ended after %d of %d events: %v", len(got), n, got)
	return nil
}
