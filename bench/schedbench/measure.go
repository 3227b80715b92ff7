package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/internal/testproc"
)

type measureSpec struct {
	side    string
	nodes   int
	pods    int
	dir     string
	timeout time.Duration
}

// Measurement is one scheduler binding one batch of pending pods.
type Measurement struct {
	Side  string `json:"side"`
	Nodes int    `json:"nodes"`
	Pods  int    `json:"pods"`
	// PodsPerSec is the binding rate from the first bind to the last one:
	// (pods - 1) / (last - first), excluding the scheduler's start.
	PodsPerSec float64 `json:"pods_per_second"`
	// FirstBindSec is from the scheduler's start to its first bind (cache
	// sync of every node and pod); AllBoundSec to its last.
	FirstBindSec float64 `json:"first_bind_seconds"`
	AllBoundSec  float64 `json:"all_bound_seconds"`
	// CPUSec is the scheduler process's CPU time until the last bind, and
	// PeakRSSMiB its peak resident memory (VmHWM).
	CPUSec float64 `json:"cpu_seconds"`
	// ServerCPUSec is the keelson server's CPU time over the same span:
	// the load each scheduler puts on the API server and store.
	ServerCPUSec  float64 `json:"server_cpu_seconds"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	Spread        Spread  `json:"spread"`
	LoadAvgBefore string  `json:"loadavg_before"`
	LoadAvgAfter  string  `json:"loadavg_after"`
}

// Spread is the distribution of pods over every node of the cluster.
type Spread struct {
	Min        int     `json:"min"`
	Max        int     `json:"max"`
	Mean       float64 `json:"mean"`
	StdDev     float64 `json:"stddev"`
	EmptyNodes int     `json:"empty_nodes"`
}

// measure creates the pending pods with no scheduler running, starts the
// scheduler, times the binds as a watch reports them, reads the
// scheduler's CPU and memory, stops it, and measures the spread.
func measure(ctx context.Context, log *slog.Logger, cl *clusterClient, srv *keelsonproc.Server, start schedulerStarter, spec measureSpec) (Measurement, error) {
	m := Measurement{Side: spec.side, Nodes: spec.nodes, Pods: spec.pods, LoadAvgBefore: procstat.LoadAvg()}
	if err := cl.deletePods(ctx); err != nil {
		return m, err
	}
	log.Info("creating pending pods", "pods", spec.pods)
	if err := cl.createPods(ctx, spec.pods); err != nil {
		return m, err
	}
	list, err := cl.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{ResourceVersion: "0", Limit: 1})
	if err != nil {
		return m, fmt.Errorf("listing the bench pods: %w", err)
	}
	rv := list.ResourceVersion

	ctx, cancel := context.WithTimeout(ctx, spec.timeout)
	defer cancel()
	serverCPU0, err := procstat.CPUSeconds(srv.Proc.PID())
	if err != nil {
		return m, err
	}
	p, err := start(spec.dir)
	if err != nil {
		return m, err
	}
	defer p.Stop(stopTimeout)
	first, last, err := watchBinds(ctx, log, cl, rv, spec.pods, p)
	if err != nil {
		return m, err
	}
	if m.CPUSec, err = procstat.CPUSeconds(p.PID()); err != nil {
		return m, err
	}
	serverCPU1, err := procstat.CPUSeconds(srv.Proc.PID())
	if err != nil {
		return m, err
	}
	m.ServerCPUSec = serverCPU1 - serverCPU0
	mem, err := procstat.ReadMemory(p.PID())
	if err != nil {
		return m, err
	}
	m.PeakRSSMiB = procstat.MiB(mem.VmHWMKiB)
	p.Stop(stopTimeout)
	m.LoadAvgAfter = procstat.LoadAvg()
	m.FirstBindSec = first.Sub(p.Started).Seconds()
	m.AllBoundSec = last.Sub(p.Started).Seconds()
	m.PodsPerSec = float64(spec.pods-1) / last.Sub(first).Seconds()
	m.Spread, err = spread(ctx, cl)
	return m, err
}

// watchBinds follows the pods from resource version rv until want of them
// are bound, and returns when the first and the last bind were seen. A
// watch that breaks (a loaded server may drop the connection) resumes from
// the last version seen, or from a fresh list if that version is gone. It
// fails if the scheduler exits or ctx ends first.
func watchBinds(ctx context.Context, log *slog.Logger, cl *clusterClient, rv string, want int, sched *testproc.Process) (first, last time.Time, err error) {
	bound := make(map[string]bool, want)
	for len(bound) < want {
		w, err := cl.cs.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			log.Warn("watch version expired; listing", "rv", rv)
			if rv, err = listBound(ctx, cl, bound, &first, &last); err != nil {
				return first, last, err
			}
			continue
		}
		if err != nil {
			return first, last, fmt.Errorf("watching the bench pods: %w", err)
		}
		next, err := consume(ctx, w, bound, want, sched, &first, &last)
		w.Stop()
		if err != nil {
			return first, last, err
		}
		if next != "" {
			rv = next
		}
	}
	return first, last, nil
}

// listBound records the bound pods a list shows (a bind seen this way is
// timed now) and returns the list's resource version.
func listBound(ctx context.Context, cl *clusterClient, bound map[string]bool, first, last *time.Time) (string, error) {
	list, err := cl.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", fmt.Errorf("listing the bench pods: %w", err)
	}
	now := time.Now()
	for i := range list.Items {
		if p := &list.Items[i]; p.Spec.NodeName != "" && !bound[p.Name] {
			if len(bound) == 0 {
				*first = now
			}
			bound[p.Name] = true
			*last = now
		}
	}
	return list.ResourceVersion, nil
}

// consume reads one watch until it ends or want pods are bound, and
// returns the resource version to resume from. A watch error ends the
// watch, to be resumed.
func consume(ctx context.Context, w watch.Interface, bound map[string]bool, want int, sched *testproc.Process, first, last *time.Time) (string, error) {
	var rv string
	for len(bound) < want {
		select {
		case <-ctx.Done():
			return rv, fmt.Errorf("%d of %d pods bound when the time ran out: %w", len(bound), want, ctx.Err())
		case <-sched.Exited():
			return rv, sched.Failure(fmt.Errorf("exited with %d of %d pods bound: %v", len(bound), want, sched.WaitErr()))
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return rv, nil
			}
			pod, isPod := ev.Object.(*v1.Pod)
			if !isPod {
				continue
			}
			rv = pod.ResourceVersion
			if ev.Type != watch.Modified || pod.Spec.NodeName == "" || bound[pod.Name] {
				continue
			}
			now := time.Now()
			if len(bound) == 0 {
				*first = now
			}
			bound[pod.Name] = true
			*last = now
		}
	}
	return rv, nil
}

// spread counts the bench pods on every node, empty ones included.
func spread(ctx context.Context, cl *clusterClient) (Spread, error) {
	counts := make(map[string]int, cl.nodes)
	for i := range cl.nodes {
		counts[nodeName(i)] = 0
	}
	opts := metav1.ListOptions{Limit: 2000}
	for {
		list, err := cl.cs.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return Spread{}, fmt.Errorf("listing the bench pods: %w", err)
		}
		for i := range list.Items {
			if n := list.Items[i].Spec.NodeName; n != "" {
				counts[n]++
			}
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	s := Spread{Min: math.MaxInt}
	var sum, sumSq float64
	for _, c := range counts {
		s.Min, s.Max = min(s.Min, c), max(s.Max, c)
		if c == 0 {
			s.EmptyNodes++
		}
		sum += float64(c)
		sumSq += float64(c) * float64(c)
	}
	n := float64(len(counts))
	s.Mean = sum / n
	s.StdDev = math.Sqrt(max(sumSq/n-s.Mean*s.Mean, 0))
	return s, nil
}
