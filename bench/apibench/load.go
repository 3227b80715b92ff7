package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keelson/keelson/bench/internal/latency"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	// clientQPS and clientBurst lift client-go's default rate limit (5 QPS)
	// far above what either server sustains here, so the servers set the pace.
	clientQPS   = 5000
	clientBurst = 5000
	// createTimeout bounds one request so a wedged server fails the run
	// instead of hanging it.
	createTimeout  = 30 * time.Second
	benchNamespace = "apibench"
)

// workload is the ConfigMap create run, identical for both sides.
type workload struct {
	Workers   int           `json:"workers"`
	Total     int           `json:"configmaps"`
	DataKeys  int           `json:"data_keys"`
	ValueSize int           `json:"value_bytes"`
	MaxTime   time.Duration `json:"-"`
}

// result is the create run's figures on one side.
type result struct {
	Creates       int     `json:"creates"`
	ElapsedSec    float64 `json:"elapsed_seconds"`
	CreatesPerSec float64 `json:"creates_per_second"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	Truncated     bool    `json:"truncated"` // stopped by the time cap before Total
}

// configMapData is the payload of every ConfigMap: DataKeys printable
// values of ValueSize bytes.
func (w workload) configMapData() map[string]string {
	v := make([]byte, w.ValueSize)
	for i := range v {
		v[i] = 'a' + byte(i%26)
	}
	data := make(map[string]string, w.DataKeys)
	for k := range w.DataKeys {
		data["key-"+strconv.Itoa(k)] = string(v)
	}
	return data
}

// runCreates creates w.Total ConfigMaps in benchNamespace from w.Workers
// goroutines sharing one clientset (one rest config, one connection pool),
// each with at most one request in flight. Any failed create fails the run:
// throughput with errors is not comparable.
func runCreates(ctx context.Context, cfg *rest.Config, w workload) (result, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return result{}, fmt.Errorf("clientset for %s: %w", cfg.Host, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return result{}, fmt.Errorf("create namespace %s: %w", benchNamespace, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	data := w.configMapData()
	var next atomic.Int64
	lat := make([][]time.Duration, w.Workers)
	start := time.Now()
	stopAt := start.Add(w.MaxTime)
	var wg sync.WaitGroup
	for g := range w.Workers {
		wg.Go(func() {
			lat[g] = createLoop(ctx, cancel, cs, w, &next, stopAt, data)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return result{}, err
	}
	return summarize(w, elapsed, slices.Concat(lat...)), nil
}

// createLoop is one worker: it claims object indexes until Total is reached
// or the time cap passes, and returns each create's latency.
func createLoop(ctx context.Context, fail context.CancelCauseFunc, cs kubernetes.Interface, w workload,
	next *atomic.Int64, stopAt time.Time, data map[string]string) []time.Duration {
	var lat []time.Duration
	cms := cs.CoreV1().ConfigMaps(benchNamespace)
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		i := next.Add(1) - 1
		if i >= int64(w.Total) {
			break
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%06d", i)}, Data: data}
		opCtx, cancel := context.WithTimeout(ctx, createTimeout)
		t0 := time.Now()
		_, err := cms.Create(opCtx, cm, metav1.CreateOptions{})
		d := time.Since(t0)
		cancel()
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("create configmap %s/%s: %w", benchNamespace, cm.Name, err))
			}
			break
		}
		lat = append(lat, d)
	}
	return lat
}

func summarize(w workload, elapsed time.Duration, lat []time.Duration) result {
	s := latency.Summarize(lat)
	return result{
		Creates:       len(lat),
		ElapsedSec:    elapsed.Seconds(),
		CreatesPerSec: latency.Rate(len(lat), elapsed),
		P50Ms:         s.P50Ms,
		P99Ms:         s.P99Ms,
		P999Ms:        s.P999Ms,
		MaxMs:         s.MaxMs,
		Truncated:     len(lat) < w.Total,
	}
}

// describe is the workload in one line for the report header.
func (w workload) describe() string {
	return strings.Join([]string{
		fmt.Sprintf("%d ConfigMaps (%d keys x %d bytes)", w.Total, w.DataKeys, w.ValueSize),
		fmt.Sprintf("%d client-go workers sharing one rest config (QPS %d, burst %d, protobuf)", w.Workers, clientQPS, clientBurst),
	}, ", ")
}
