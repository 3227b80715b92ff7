package ingress

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/keelson/keelson/plugins/sdk"
)

// The data plane's garbage collection. A proxied request allocates a few
// kilobytes, so with Go's default target (GOGC 100) a process whose live
// heap is small collects every few thousand requests, and those
// collections are most of its p99 tail. The node part therefore lets its
// heap grow further between collections (gogc, default 400), but only
// while the heap that allows stays under heapLimit: the same process holds
// the informer caches of every Ingress, Service and EndpointSlice, and in a
// large cluster the target falls back toward Go's default instead of
// multiplying what the caches hold.
const (
	defaultDataPlaneGOGC = 400
	defaultHeapLimit     = "128Mi"
	minHeapLimit         = 16 << 20
	// gcTuneEvery is how often the live heap is looked at.
	gcTuneEvery = 2 * time.Second
)

// validateGC checks gogc and heapLimit and returns the limit in bytes.
func validateGC(cfg Config) (int64, error) {
	if cfg.GOGC < 10 || cfg.GOGC > 10000 {
		return 0, sdk.ConfigErrorf("gogc", "gogc is %d: set a percent between 10 and 10000 (100 is Go's default; the data plane's default %d trades memory for fewer collections)", cfg.GOGC, defaultDataPlaneGOGC)
	}
	q, err := resource.ParseQuantity(cfg.HeapLimit)
	if err != nil {
		return 0, sdk.ConfigErrorf("heapLimit", "heapLimit %q is not a quantity: write bytes with a suffix, such as 128Mi or 1Gi", cfg.HeapLimit)
	}
	if q.Value() < minHeapLimit {
		return 0, sdk.ConfigErrorf("heapLimit", "heapLimit %s is below 16Mi, less than an idle data plane uses: raise it, or set gogc to 100 for Go's default", cfg.HeapLimit)
	}
	return q.Value(), nil
}

// gcPercent is the GOGC that lets the heap grow to live*(1+gogc/100) but
// not past limit, and never less than Go's default 100 (with a live heap
// over half the limit the heap may grow past it, as it would by default).
// It is rounded down to a multiple of 25 so that small changes of the live
// heap do not retune the collector.
func gcPercent(live uint64, gogc int, limit int64) int {
	if gogc <= 100 || live == 0 {
		return gogc
	}
	room := int64(float64(limit)/float64(live)*100) - 100
	p := int(min(max(room, 100), int64(gogc)))
	return max(p/25*25, 100)
}

// TuneGC keeps the data plane's GOGC at gcPercent of its live heap, by
// cfg's gogc and heapLimit, until ctx ends. A GOGC or GOMEMLIMIT in the
// environment (the server's plugins.runtime.ingress) is the operator's
// explicit setting and wins: then TuneGC does nothing.
func TuneGC(ctx context.Context, cfg Config, log *slog.Logger) {
	limit, err := validateGC(cfg)
	if err != nil {
		log.Error("data plane GC left at Go's default", "err", err)
		return
	}
	if g, m := os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"); g != "" || m != "" {
		log.Info("the data plane keeps the GOGC/GOMEMLIMIT of its environment (plugins.runtime.ingress); its gogc and heapLimit are not applied", "GOGC", g, "GOMEMLIMIT", m)
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := 0
	tick := time.NewTicker(gcTuneEvery)
	defer tick.Stop()
	for {
		metrics.Read(sample)
		live := uint64(0)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			live = sample[0].Value.Uint64()
		}
		if p := gcPercent(live, cfg.GOGC, limit); p != cur {
			debug.SetGCPercent(p)
			log.Debug("data plane GOGC", "percent", p, "liveHeap", live, "heapLimit", limit)
			cur = p
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
