package raftnode

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// failingLogs is a log store whose writes fail while fail is set, as a full
// disk's do.
type failingLogs struct {
	raft.LogStore
	fail atomic.Bool
}

var errDiskFull = errors.New("injected: no space left on device")

func (l *failingLogs) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

func (l *failingLogs) StoreLogs(logs []*raft.Log) error {
	if l.fail.Load() {
		return errDiskFull
	}
	return l.LogStore.StoreLogs(logs)
}

// A follower whose log store refuses entries for a while, under a steady
// write load, receives and applies everything once it accepts them again.
// With hashicorp/raft's pipelined replication the leader's pipeline to it
// could wedge on the refusal (heartbeats still flowing, no entry ever
// again): TestFullDiskLeaderBoltDBLog's follower after the disk was freed.
func TestFollowerCatchesUpAfterItsLogStoreFailed(t *testing.T) {
	stores := map[string]*failingLogs{}
	var mu sync.Mutex
	c := startCluster(t, 3, func(cfg *Config) {
		id := cfg.NodeID
		cfg.wrapLogStore = func(s raft.LogStore) raft.LogStore {
			f := &failingLogs{LogStore: s}
			mu.Lock()
			stores[id] = f
			mu.Unlock()
			return f
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				li := slices.IndexFunc(c.nodes, (*Node).IsLeader)
				if li < 0 {
					time.Sleep(5 * time.Millisecond) // an election: do not spin
					continue
				}
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				_, _, _ = c.nodes[li].Apply(actx, setCmd(fmt.Sprintf("w%d-%d", w, i%50), "v"))
				acancel()
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()

	for round := range 30 {
		li := c.leader(t)
		fi := (li + 1 + round%2) % len(c.nodes)
		follower := c.nodes[fi]
		mu.Lock()
		f := stores[follower.ID()]
		mu.Unlock()
		f.fail.Store(true)
		time.Sleep(time.Duration(20+round%4*30) * time.Millisecond)
		f.fail.Store(false)
		target := c.nodes[c.leader(t)].raft.AppliedIndex()
		deadline := time.Now().Add(15 * time.Second)
		for follower.raft.AppliedIndex() < target {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: follower %s applied %d, still short of %d 15s after its log store works again (leader %s applied %d)",
					round, follower.ID(), follower.raft.AppliedIndex(), target, c.nodes[c.leader(t)].ID(), c.nodes[c.leader(t)].raft.AppliedIndex())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
