package main

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/bench/internal/procstat"
)

// snapshot is what the bench reads from a side before and after the load.
type snapshot struct {
	requests      []map[string]histogram // per API server
	commit        []map[string]histogram // per server (keelson) or etcd
	leaderChanges []float64              // per server (keelson) or etcd
	cpu           map[int]float64        // CPU seconds by pid
	plugins       map[string]int         // plugin processes: pid by name
}

// The metrics each side's raft commit latency and leader changes come
// from: keelson's store, or etcd (one member: its WAL fsync is its commit).
const (
	keelsonCommit  = "keelson_raft_commit_duration_seconds"
	keelsonLeaders = "keelson_raft_leader_changes_total"
	etcdCommit     = "etcd_disk_wal_fsync_duration_seconds"
	etcdLeaders    = "etcd_server_leader_changes_seen_total"
)

func takeSnapshot(ctx context.Context, s *side, procs []namedPID) (snapshot, error) {
	// A server that cannot answer in a minute fails the bench rather than
	// hangs it.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	snap := snapshot{cpu: map[int]float64{}, plugins: map[string]int{}}
	add := func(sc scrape, commitMetric, leadersMetric string) error {
		h, err := sc.histograms(commitMetric)
		if err != nil {
			return err
		}
		snap.commit = append(snap.commit, h)
		snap.leaderChanges = append(snap.leaderChanges, sc.counter(leadersMetric))
		return nil
	}
	for _, cfg := range s.apiservers {
		sc, err := scrapeAPIServer(ctx, cfg)
		if err != nil {
			return snap, err
		}
		h, err := sc.histograms("apiserver_request_duration_seconds", requestLabels...)
		if err != nil {
			return snap, err
		}
		snap.requests = append(snap.requests, h)
		if s.etcdURL == "" {
			if err := add(sc, keelsonCommit, keelsonLeaders); err != nil {
				return snap, err
			}
		}
	}
	if s.etcdURL != "" {
		body, err := httpGet(ctx, s.etcdURL+"/metrics")
		if err != nil {
			return snap, err
		}
		sc, err := parseScrape(bytesReader(body))
		if err != nil {
			return snap, err
		}
		if err := add(sc, etcdCommit, etcdLeaders); err != nil {
			return snap, err
		}
	}
	for _, p := range procs {
		if c, err := procstat.CPUSeconds(p.PID); err == nil {
			snap.cpu[p.PID] = c
		}
		if name, ok := strings.CutPrefix(p.Name, "plugin "); ok {
			snap.plugins[name] = p.PID
		}
	}
	return snap, nil
}

func scrapeAPIServer(ctx context.Context, cfg *rest.Config) (scrape, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	body, err := cs.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("GET %s/metrics: %w", cfg.Host, err)
	}
	return parseScrape(bytesReader(body))
}

// relaunched counts the plugins of before that run under another process
// (or not at all) in after: restarted by their supervisor or launched
// again on a new leader.
func relaunched(before, after map[string]int) int {
	n := 0
	for name, pid := range before {
		if after[name] != pid {
			n++
		}
	}
	return n
}

// procUse is one process's resource use over the load.
type procUse struct {
	Name       string
	PID        int
	CPUSeconds float64
	PeakRSSMiB float64 // VmHWM: since the process started
}

// processUse is every side process's CPU between the snapshots and its
// peak resident memory, heaviest CPU first.
func processUse(procs []namedPID, before, after map[int]float64) []procUse {
	var out []procUse
	for _, p := range procs {
		m, err := procstat.ReadMemory(p.PID)
		if err != nil {
			continue
		}
		out = append(out, procUse{Name: p.Name, PID: p.PID, CPUSeconds: after[p.PID] - before[p.PID], PeakRSSMiB: procstat.MiB(m.VmHWMKiB)})
	}
	slices.SortFunc(out, func(a, b procUse) int { return cmp.Compare(b.CPUSeconds, a.CPUSeconds) })
	return out
}

// maxDelta is the largest after-before over servers: a leader change
// counted by every server is still one change.
func maxDelta(before, after []float64) float64 {
	var m float64
	for i := range min(len(before), len(after)) {
		m = math.Max(m, after[i]-before[i])
	}
	return m
}

// throughput is the scheduler's binding rate: binds over the span from the
// first to the last, and the most in any one second.
type throughput struct {
	Pods       int
	AvgPerSec  float64
	PeakPerSec int
}

func schedThroughput(binds []time.Time) throughput {
	t := throughput{Pods: len(binds)}
	if len(binds) == 0 {
		return t
	}
	slices.SortFunc(binds, func(a, b time.Time) int { return a.Compare(b) })
	if span := binds[len(binds)-1].Sub(binds[0]); span > 0 {
		t.AvgPerSec = float64(len(binds)) / span.Seconds()
	}
	perSec := map[int64]int{}
	for _, b := range binds {
		sec := int64(b.Sub(binds[0]) / time.Second)
		perSec[sec]++
		t.PeakPerSec = max(t.PeakPerSec, perSec[sec])
	}
	return t
}

// loadSampler records the 1-minute load average every interval.
type loadSampler struct {
	mu      sync.Mutex
	samples []float64
}

func (l *loadSampler) run(ctx context.Context, interval time.Duration) {
	for {
		if v, err := strconv.ParseFloat(procstat.LoadAvg(), 64); err == nil {
			l.mu.Lock()
			l.samples = append(l.samples, v)
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// summary is the mean and maximum of the samples.
func (l *loadSampler) summary() (mean, peak float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range l.samples {
		mean += v
		peak = math.Max(peak, v)
	}
	if len(l.samples) > 0 {
		mean /= float64(len(l.samples))
	}
	return mean, peak
}
