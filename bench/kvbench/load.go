package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	// keySize and valueSize are the payload the issue fixes for both servers.
	keySize   = 8
	valueSize = 256
	// clientsPerConn mirrors etcd's own published benchmark runs
	// (`benchmark --conns=100 --clients=1000 put`): goroutines share a small
	// number of gRPC connections rather than each dialing its own.
	clientsPerConn = 10
	// putTimeout bounds one request so a wedged server fails the run instead
	// of hanging it.
	putTimeout = 10 * time.Second
)

// workload is one measured run of sequential, distinct-key puts.
type workload struct {
	Name    string
	Clients int // concurrent goroutines, each with at most one put in flight
	Conns   int // shared gRPC connections; 0 means ceil(Clients/clientsPerConn)
	Total   int // puts to issue
	// MaxDuration stops the run early so the whole bench stays bounded on a
	// slow disk; the result then reports fewer puts and Truncated.
	MaxDuration time.Duration
	// KeyOffset separates the key ranges of runs against the same server so
	// every put in a run creates a new key.
	KeyOffset uint64
}

func (w workload) conns() int {
	if w.Conns > 0 {
		return min(w.Conns, w.Clients)
	}
	return (w.Clients + clientsPerConn - 1) / clientsPerConn
}

// result holds the figures of one workload against one server.
type result struct {
	Workload   string  `json:"workload"`
	Clients    int     `json:"clients"`
	Conns      int     `json:"conns"`
	Puts       int     `json:"puts"`
	ElapsedSec float64 `json:"elapsed_seconds"`
	PutsPerSec float64 `json:"puts_per_second"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	MaxMs      float64 `json:"max_ms"`
	Truncated  bool    `json:"truncated"`
}

// benchKey returns the i-th key: 8 printable bytes, distinct for i < 2^32.
func benchKey(i uint64) string {
	return fmt.Sprintf("%08x", uint32(i))
}

// benchValue returns the fixed 256-byte value; printable so a server that
// logs or inspects values is not penalised by escaping.
func benchValue() string {
	b := make([]byte, valueSize)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// dial opens n independent clients (one gRPC connection each) to endpoints.
func dial(ctx context.Context, endpoints []string, n int) ([]*clientv3.Client, error) {
	clients := make([]*clientv3.Client, 0, n)
	for range n {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   endpoints,
			DialTimeout: 5 * time.Second,
			Context:     ctx,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			closeAll(clients)
			return nil, fmt.Errorf("dial %v: %w", endpoints, err)
		}
		clients = append(clients, c)
	}
	return clients, nil
}

func closeAll(clients []*clientv3.Client) {
	for _, c := range clients {
		_ = c.Close() // best effort at teardown; the run's outcome is already known
	}
}

// sample is the raw outcome of one pass of a workload.
type sample struct {
	conns   int
	elapsed time.Duration
	lat     [][]time.Duration // per client
}

// runWorkload issues w against endpoints and measures every put's latency.
// Any failed put fails the run: throughput with errors is not comparable.
func runWorkload(ctx context.Context, endpoints []string, w workload) (sample, error) {
	if w.Clients < 1 || w.Total < 1 {
		return sample{}, fmt.Errorf("workload %q: clients (%d) and total (%d) must be at least 1", w.Name, w.Clients, w.Total)
	}
	conns, err := dial(ctx, endpoints, w.conns())
	if err != nil {
		return sample{}, err
	}
	defer closeAll(conns)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	value := benchValue()
	var next atomic.Uint64
	lat := make([][]time.Duration, w.Clients)
	start := time.Now()
	stopAt := start.Add(w.MaxDuration)
	var wg sync.WaitGroup
	for g := range w.Clients {
		cli := conns[g%len(conns)]
		wg.Go(func() {
			lat[g] = putLoop(ctx, cancel, cli, w, &next, stopAt, value)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return sample{}, fmt.Errorf("workload %q: %w", w.Name, err)
	}
	return sample{conns: len(conns), elapsed: elapsed, lat: lat}, nil
}

// putLoop is one client: it claims key indexes until Total is reached or the
// deadline passes, and returns the latency of each put it made.
func putLoop(ctx context.Context, fail context.CancelCauseFunc, cli *clientv3.Client, w workload,
	next *atomic.Uint64, stopAt time.Time, value string) []time.Duration {
	var lat []time.Duration
	for ctx.Err() == nil {
		if w.MaxDuration > 0 && time.Now().After(stopAt) {
			return lat
		}
		i := next.Add(1) - 1
		if i >= uint64(w.Total) {
			return lat
		}
		key := benchKey(w.KeyOffset + i)
		opCtx, cancel := context.WithTimeout(ctx, putTimeout)
		t0 := time.Now()
		_, err := cli.Put(opCtx, key, value)
		d := time.Since(t0)
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("put %q: %w", key, err))
			}
			return lat
		}
		lat = append(lat, d)
	}
	return lat
}
