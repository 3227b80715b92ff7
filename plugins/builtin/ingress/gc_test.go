package ingress

import (
	"context"
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestGCPercent(t *testing.T) {
	const mi = 1 << 20
	limit := int64(128 * mi)
	for _, c := range []struct {
		live uint64
		gogc int
		want int
	}{
		{10 * mi, 400, 400},   // goal 50Mi: under the limit
		{25 * mi, 400, 400},   // goal 125Mi
		{32 * mi, 400, 300},   // goal capped at the limit: 128/32 = 4x
		{40 * mi, 400, 200},   // 3.2x, rounded down to a multiple of 25
		{60 * mi, 400, 100},   // 2.13x: at least Go's default
		{500 * mi, 400, 100},  // caches past the limit: Go's default
		{10 * mi, 100, 100},   // nothing raised
		{10 * mi, 50, 50},     // a lower target is kept as asked
		{0, 400, 400},         // not measured yet
		{10 * mi, 2000, 1175}, // 12.8x, rounded down
	} {
		if got := gcPercent(c.live, c.gogc, limit); got != c.want {
			t.Errorf("live %dMi gogc %d: %d, want %d", c.live/mi, c.gogc, got, c.want)
		}
	}
}

// TuneGC sets the process's GOGC, unless the environment sets one.
func TestTuneGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	cfg := DefaultConfig()
	cfg.GOGC = 800
	cfg.HeapLimit = "64Gi" // far over this test's live heap

	t.Setenv("GOGC", "150")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	TuneGC(ctx, cfg, slog.New(slog.DiscardHandler))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC in the environment: GOGC %d, want it left at 100", got)
	}

	t.Setenv("GOGC", "")
	TuneGC(ctx, cfg, slog.New(slog.DiscardHandler)) // one tuning, then ctx is done
	if got := debug.SetGCPercent(100); got != 800 {
		t.Errorf("GOGC %d, want 800", got)
	}
}
