package raftnode

import (
	"context"
	"crypto/rand"
	"testing"
	"time"
)

func benchNode(b *testing.B, store string) *Node {
	b.Helper()
	cfg := fastConfig(b, "bench", b.TempDir())
	cfg.Bootstrap = true
	cfg.LogStore = store
	cfg.SnapshotThreshold = 1 << 20
	n := mustNew(b, cfg, newKV())
	b.Cleanup(func() { _ = n.Shutdown() })
	waitLeader(b, n)
	return n
}

func cmd256(b *testing.B) []byte {
	v := make([]byte, 250)
	if _, err := rand.Read(v); err != nil {
		b.Fatal(err)
	}
	for i := range v {
		v[i] = 'a' + v[i]%26 // printable, no spaces: a valid kvSM value
	}
	return setCmd("k", string(v))[:256]
}

// BenchmarkApply measures a committed, fsync'd, FSM-applied write on a single
// node with 256-byte commands, with each log store.
func BenchmarkApply(b *testing.B) {
	for _, store := range []string{LogStoreWAL, LogStoreBoltDB} {
		b.Run(store+"/sequential", func(b *testing.B) {
			n := benchNode(b, store)
			cmd := cmd256(b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.SetBytes(int64(len(cmd)))
			b.ResetTimer()
			for b.Loop() {
				if _, _, err := n.Apply(ctx, cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(store+"/parallel", func(b *testing.B) {
			n := benchNode(b, store)
			cmd := cmd256(b)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.SetBytes(int64(len(cmd)))
			// Many concurrent proposers, as under kube-apiserver load: raft
			// batches them into one fsync.
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := n.Apply(ctx, cmd); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkLinearizableRead measures the leader read path (VerifyLeader plus
// the applied-index wait) on a single node.
func BenchmarkLinearizableRead(b *testing.B) {
	n := benchNode(b, LogStoreWAL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for b.Loop() {
		if _, err := n.LinearizableRead(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardedApply compares a write proposed on the leader of a
// 3-node loopback cluster with the same write sent to a follower, which
// forwards it to the leader and waits for its own FSM to apply it. The
// difference is the cost of forwarding; compare with BenchmarkApply for the
// cost of replication itself.
func BenchmarkForwardedApply(b *testing.B) {
	for _, on := range []string{"leader", "follower"} {
		for _, parallel := range []bool{false, true} {
			name := on + "/sequential"
			if parallel {
				name = on + "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				c := startCluster(b, 3, func(cfg *Config) { cfg.SnapshotThreshold = 1 << 20 })
				n := c.nodes[c.leader(b)]
				if on == "follower" {
					n = c.nodes[c.followers(b)[0]]
				}
				cmd := cmd256(b)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				b.SetBytes(int64(len(cmd)))
				b.ResetTimer()
				if !parallel {
					for b.Loop() {
						if _, _, err := n.Apply(ctx, cmd); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.SetParallelism(16)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, _, err := n.Apply(ctx, cmd); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
