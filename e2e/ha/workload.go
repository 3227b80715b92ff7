package ha

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// InitialValue is what every workload key holds before the clients start.
const InitialValue = "init"

// CASConfig shapes a compare-and-swap workload through the etcd API.
type CASConfig struct {
	Prefix           string        // keys live under it (default "/ha/")
	Keys             int           // registers (default 4)
	ClientsPerServer int           // concurrent clients on each server (default 2)
	RequestTimeout   time.Duration // after it the outcome is unknown (default 3s)
	Think            time.Duration // pause between requests (default 5ms)
	Seed             uint64        // random choices; 0 picks one
}

func (cfg *CASConfig) defaults() {
	if cfg.Prefix == "" {
		cfg.Prefix = "/ha/"
	}
	if cfg.Keys == 0 {
		cfg.Keys = 4
	}
	if cfg.ClientsPerServer == 0 {
		cfg.ClientsPerServer = 2
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	if cfg.Think == 0 {
		cfg.Think = 5 * time.Millisecond
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
}

// Ack is a write a client saw succeed, at the revision it was told.
type Ack struct {
	Key, Value string
	Rev        int64
}

// History is what the clients of a workload recorded.
type History struct {
	Prefix  string
	Ops     []porcupine.Operation
	Acks    []Ack           // acknowledged writes
	Written map[string]bool // every value any write carried, acknowledged or not
}

// Summary counts operations by kind and outcome.
func (h *History) Summary() string {
	type key struct {
		kind    OpKind
		outcome string
	}
	n := map[key]int{}
	for _, op := range h.Ops {
		in, out := op.Input.(RegisterInput), op.Output.(RegisterOutput)
		o := "ok"
		switch {
		case out.Unknown:
			o = "unknown"
		case in.Kind == OpCAS && !out.OK:
			o = "failed-compare"
		}
		n[key{in.Kind, o}]++
	}
	var parts []string
	for k, v := range n {
		parts = append(parts, fmt.Sprintf("%s/%s=%d", k.kind, k.outcome, v))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%d operations (%s), %d acknowledged writes", len(h.Ops), strings.Join(parts, " "), len(h.Acks))
}

// CASWorkload is a running set of clients. Stop ends it.
type CASWorkload struct {
	cfg    CASConfig
	base   time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	hist History
}

// Keys returns the workload's keys.
func (cfg CASConfig) keys() []string {
	var ks []string
	for i := range cfg.Keys {
		ks = append(ks, fmt.Sprintf("%sk%d", cfg.Prefix, i))
	}
	return ks
}

// InitKeys writes InitialValue to every key through the first server and
// returns the revision after it, from which watchers can start.
func InitKeys(t testing.TB, c *Cluster, cfg CASConfig) int64 {
	t.Helper()
	cfg.defaults()
	var rev int64
	for _, k := range cfg.keys() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.Servers[0].client.Put(ctx, k, InitialValue)
		cancel()
		if err != nil {
			t.Fatalf("initializing %s: %v", k, err)
		}
		rev = resp.Header.Revision
	}
	return rev
}

// StartCAS starts ClientsPerServer clients on every server's etcd API.
// Each loops: pick a key, then read it, write a unique value, or
// compare-and-swap from the value it last read (comparing the value or,
// equivalently since values are unique, the mod revision).
func StartCAS(t testing.TB, c *Cluster, cfg CASConfig) *CASWorkload {
	t.Helper()
	var regs []register
	for _, s := range c.Servers {
		regs = append(regs, etcdRegister{s.client})
	}
	return startWorkload(t, cfg, regs)
}

// register is one client's way to a server's registers.
type register interface {
	do(ctx context.Context, in RegisterInput, prev *readState, useRev bool) (RegisterOutput, error)
}

func startWorkload(t testing.TB, cfg CASConfig, regs []register) *CASWorkload {
	t.Helper()
	cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	w := &CASWorkload{cfg: cfg, base: time.Now(), cancel: cancel,
		hist: History{Prefix: cfg.Prefix, Written: map[string]bool{}}}
	id := 0
	for _, r := range regs {
		for range cfg.ClientsPerServer {
			w.wg.Add(1)
			go w.client(ctx, id, r, rand.New(rand.NewPCG(cfg.Seed, uint64(id))))
			id++
		}
	}
	t.Logf("workload: %d clients, %d keys under %s, seed %d", id, cfg.Keys, cfg.Prefix, cfg.Seed)
	return w
}

// Stop ends the clients and returns what they recorded.
func (w *CASWorkload) Stop() *History {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return &w.hist
}

func (w *CASWorkload) now() int64 { return int64(time.Since(w.base)) }

func (w *CASWorkload) client(ctx context.Context, id int, reg register, rng *rand.Rand) {
	defer w.wg.Done()
	keys := w.cfg.keys()
	seen := map[string]*readState{} // key -> what this client last read
	for seq := 0; ctx.Err() == nil; seq++ {
		key := keys[rng.IntN(len(keys))]
		in := RegisterInput{Key: key, Value: fmt.Sprintf("c%d-%d", id, seq)}
		prev := seen[key]
		switch r := rng.IntN(10); {
		case r < 4 || prev == nil:
			in.Kind = OpRead
		case r < 6:
			in.Kind = OpWrite
		default:
			in.Kind = OpCAS
			in.Expect = prev.value
		}
		if in.Kind != OpRead {
			w.mu.Lock()
			w.hist.Written[in.Value] = true
			w.mu.Unlock()
		}
		useRev := prev != nil && rng.IntN(2) == 0
		call := w.now()
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
		out, err := reg.do(rctx, in, prev, useRev)
		cancel()
		ret := w.now()
		if err != nil {
			if ctx.Err() != nil && in.Kind == OpRead {
				return
			}
			if in.Kind == OpRead || neverSent(err) {
				// A failed read, or a request that never reached a
				// server, changed nothing: leave it out.
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
			out, ret = RegisterOutput{Unknown: true}, unknownReturn
		}
		w.record(id, in, out, call, ret)
		if err != nil {
			delete(seen, key)
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		if in.Kind == OpRead {
			seen[key] = &readState{out.Value, out.Rev}
		} else {
			delete(seen, key) // a CAS from our own old read would mostly fail
		}
		sleepCtx(ctx, w.cfg.Think)
	}
}

// etcdRegister keeps registers in keys of the etcd API.
type etcdRegister struct{ c *clientv3.Client }

func (r etcdRegister) do(ctx context.Context, in RegisterInput, prev *readState, useRev bool) (RegisterOutput, error) {
	c := r.c
	switch in.Kind {
	case OpRead:
		resp, err := c.Get(ctx, in.Key)
		if err != nil {
			return RegisterOutput{}, err
		}
		if len(resp.Kvs) != 1 {
			return RegisterOutput{Value: "", Rev: resp.Header.Revision}, nil
		}
		return RegisterOutput{Value: string(resp.Kvs[0].Value), Rev: resp.Kvs[0].ModRevision}, nil
	case OpWrite:
		resp, err := c.Put(ctx, in.Key, in.Value)
		if err != nil {
			return RegisterOutput{}, err
		}
		return RegisterOutput{OK: true, Rev: resp.Header.Revision}, nil
	default:
		cmp := clientv3.Compare(clientv3.Value(in.Key), "=", in.Expect)
		if useRev {
			cmp = clientv3.Compare(clientv3.ModRevision(in.Key), "=", prev.rev)
		}
		resp, err := c.Txn(ctx).If(cmp).Then(clientv3.OpPut(in.Key, in.Value)).Commit()
		if err != nil {
			return RegisterOutput{}, err
		}
		return RegisterOutput{OK: resp.Succeeded, Rev: resp.Header.Revision}, nil
	}
}

func (w *CASWorkload) record(id int, in RegisterInput, out RegisterOutput, call, ret int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hist.Ops = append(w.hist.Ops, porcupine.Operation{ClientId: id, Input: in, Output: out, Call: call, Return: ret})
	if !out.Unknown && (in.Kind == OpWrite || in.Kind == OpCAS && out.OK) {
		w.hist.Acks = append(w.hist.Acks, Ack{Key: in.Key, Value: in.Value, Rev: out.Rev})
	}
}

// neverSent reports whether err says the connection to the server could not
// be made, so the request cannot have taken effect. Anything else that
// failed may have been applied and is recorded as unknown.
func neverSent(err error) bool {
	return strings.Contains(err.Error(), "connect: connection refused")
}

// readState is a value a client read and its mod revision, the base of its
// next compare-and-swap on that key.
type readState struct {
	value string
	rev   int64
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
