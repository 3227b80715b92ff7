package kvserver

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkPutConcurrent measures puts through the whole etcd API path (gRPC,
// raft with fsync, fsm) with 100 concurrent clients on 10 connections, the
// shape of `make bench`'s store workload.
func BenchmarkPutConcurrent(b *testing.B) {
	n := startNode(b, b.TempDir(), nil)
	var conns []*clientv3.Client
	for i := 0; i < 10; i++ {
		conns = append(conns, n.client())
	}
	val := string(make([]byte, 256))
	var next atomic.Int64
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < 100; c++ {
		wg.Add(1)
		go func(cli *clientv3.Client) {
			defer wg.Done()
			var key [8]byte
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				binary.BigEndian.PutUint64(key[:], uint64(i))
				if _, err := cli.Put(context.Background(), string(key[:]), val); err != nil {
					b.Error(err)
					return
				}
			}
		}(conns[c%len(conns)])
	}
	wg.Wait()
}

// BenchmarkPutSequential measures one client's puts through the whole etcd
// API path: its latency is what every kubectl apply and every controller's
// sequential update pays.
func BenchmarkPutSequential(b *testing.B) {
	n := startNode(b, b.TempDir(), nil)
	cli := n.client()
	val := string(make([]byte, 256))
	var key [8]byte
	i := uint64(0)
	b.ResetTimer()
	for b.Loop() {
		i++
		binary.BigEndian.PutUint64(key[:], i)
		if _, err := cli.Put(context.Background(), string(key[:]), val); err != nil {
			b.Fatal(err)
		}
	}
}
