// Package configmapload is the ConfigMap create workload the API benchmarks
// run: concurrent client-go workers creating ConfigMaps, each with one request
// in flight, timed per request.
package configmapload

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
	// ClientQPS and ClientBurst lift client-go's default rate limit (5 QPS)
	// far above what a server sustains here, so the server sets the pace.
	ClientQPS   = 5000
	ClientBurst = 5000
	// createTimeout bounds one request so a wedged server fails the run
	// instead of hanging it.
	createTimeout = 30 * time.Second
)

// Workload is one create run. The same Workload gives every server the same
// objects.
type Workload struct {
	Workers   int           `json:"workers"`
	Total     int           `json:"configmaps"`
	DataKeys  int           `json:"data_keys"`
	ValueSize int           `json:"value_bytes"`
	MaxTime   time.Duration `json:"-"`
}

// Result is one create run's figures.
type Result struct {
	Creates       int     `json:"creates"`
	ElapsedSec    float64 `json:"elapsed_seconds"`
	CreatesPerSec float64 `json:"creates_per_second"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	Truncated     bool    `json:"truncated"` // stopped by the time cap before Total
}

// Tune sets what the workload needs of a client config: no client-side
// throttling, protobuf, and userAgent so the server's logs name the bench.
func Tune(cfg *rest.Config, userAgent string) {
	cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.UserAgent = userAgent
}

// configMapData is the payload of every ConfigMap: DataKeys printable
// values of ValueSize bytes.
func (w Workload) configMapData() map[string]string {
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

// Run creates w.Total ConfigMaps cm-000000... in namespace (made if missing)
// from w.Workers goroutines sharing one clientset (one rest config, one
// connection pool), each with at most one request in flight. Any failed
// create fails the run: throughput with errors is not comparable.
func Run(ctx context.Context, cfg *rest.Config, namespace string, w Workload) (Result, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return Result{}, fmt.Errorf("clientset for %s: %w", cfg.Host, err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return Result{}, fmt.Errorf("create namespace %s: %w", namespace, err)
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
			lat[g] = createLoop(ctx, cancel, cs.CoreV1().ConfigMaps(namespace), namespace, w.Total, &next, stopAt, data)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Result{}, err
	}
	return summarize(w, elapsed, slices.Concat(lat...)), nil
}

// configMaps is the part of the ConfigMap client a worker uses.
type configMaps interface {
	Create(context.Context, *corev1.ConfigMap, metav1.CreateOptions) (*corev1.ConfigMap, error)
}

// createLoop is one worker: it claims object indexes until total is reached
// or the time cap passes, and returns each create's latency.
func createLoop(ctx context.Context, fail context.CancelCauseFunc, cms configMaps, namespace string, total int,
	next *atomic.Int64, stopAt time.Time, data map[string]string) []time.Duration {
	var lat []time.Duration
	for ctx.Err() == nil && time.Now().Before(stopAt) {
		i := next.Add(1) - 1
		if i >= int64(total) {
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
				fail(fmt.Errorf("create configmap %s/%s: %w", namespace, cm.Name, err))
			}
			break
		}
		lat = append(lat, d)
	}
	return lat
}

func summarize(w Workload, elapsed time.Duration, lat []time.Duration) Result {
	s := latency.Summarize(lat)
	return Result{
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

// Describe is the workload in one line for a report header.
func (w Workload) Describe() string {
	return strings.Join([]string{
		fmt.Sprintf("%d ConfigMaps (%d keys x %d bytes)", w.Total, w.DataKeys, w.ValueSize),
		fmt.Sprintf("%d client-go workers sharing one rest config (QPS %d, burst %d, protobuf)", w.Workers, ClientQPS, ClientBurst),
	}, ", ")
}
