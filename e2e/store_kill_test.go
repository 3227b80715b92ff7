package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ackedPut is a put the server acknowledged: its value must survive a crash
// at the revision the acknowledgement carried.
type ackedPut struct {
	key, value string
	rev        int64
}

// TestStoreKeepsAcknowledgedWritesOnKill, with each raft log store: 24
// clients put distinct keys as fast as the server takes them, so raft
// commits them in batches, and the server is killed with SIGKILL while
// puts are in flight. After a restart on the same data dir every
// acknowledged put is there, at the revision it was acknowledged with; a put
// in flight at the kill may or may not be.
func TestStoreKeepsAcknowledgedWritesOnKill(t *testing.T) {
	for _, store := range []string{"wal", "boltdb"} {
		t.Run(store, func(t *testing.T) {
			s := harness.StartServer(t, harness.ServerOptions{DisableAPIServer: true, Args: []string{"--raft-log-store", store}})
			s.WaitLog(t, `store=`+store+` reason="configured; new log"`, time.Minute)
			_, err := os.Stat(filepath.Join(s.DataDir, "raft", "wal"))
			if (err == nil) != (store == "wal") {
				t.Fatalf("--raft-log-store %s: stat of the WAL directory: %v", store, err)
			}
			acked, inFlight := putUntilKilled(t, s, 24, 1500)
			s.Start(t)
			cli := s.Etcd(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := cli.Get(ctx, "/kill/", clientv3.WithPrefix())
			if err != nil {
				t.Fatalf("get after restart: %v", err)
			}
			stored := map[string][2]any{}
			for _, kv := range got.Kvs {
				stored[string(kv.Key)] = [2]any{string(kv.Value), kv.ModRevision}
			}
			lost := 0
			for _, p := range acked {
				if v, ok := stored[p.key]; !ok || v[0] != p.value || v[1] != p.rev {
					lost++
					if lost <= 5 {
						t.Errorf("acknowledged put %s=%s at revision %d: after kill -9 and restart found %v", p.key, p.value, p.rev, v)
					}
				}
			}
			if lost > 0 {
				t.Fatalf("%d of %d acknowledged puts lost or changed by kill -9", lost, len(acked))
			}
			t.Logf("%s: %d acknowledged puts all kept; %d were in flight at the kill, %d keys stored in all",
				store, len(acked), inFlight, len(got.Kvs))
		})
	}
}

// putUntilKilled runs clients that each put their own keys in sequence,
// kills the server with SIGKILL once minAcked puts were acknowledged, and
// returns the acknowledged puts and how many puts were outstanding when it
// died. It fails the test if none was: the kill must land in the middle of
// the writes.
func putUntilKilled(t *testing.T, s *harness.Server, clients, minAcked int) (acked []ackedPut, inFlight int) {
	t.Helper()
	cli := s.Etcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		mu          sync.Mutex
		count       atomic.Int64
		outstanding atomic.Int64
		wg          sync.WaitGroup
		enough      = make(chan struct{})
		once        sync.Once
	)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				key, value := fmt.Sprintf("/kill/%02d/%06d", c, i), fmt.Sprintf("v-%d-%d", c, i)
				outstanding.Add(1)
				resp, err := cli.Put(ctx, key, value)
				outstanding.Add(-1)
				if err != nil {
					return // the kill
				}
				mu.Lock()
				acked = append(acked, ackedPut{key, value, resp.Header.Revision})
				mu.Unlock()
				if count.Add(1) >= int64(minAcked) {
					once.Do(func() { close(enough) })
				}
			}
		}()
	}
	select {
	case <-enough:
	case <-ctx.Done():
		t.Fatalf("only %d puts acknowledged before the deadline", count.Load())
	}
	inFlight = int(outstanding.Load())
	s.Kill()
	// Puts issued after the kill wait for the connection: end them.
	cancel()
	wg.Wait()
	if inFlight == 0 {
		t.Fatal("no put was outstanding when the server was killed")
	}
	return acked, inFlight
}
