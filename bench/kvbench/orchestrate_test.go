package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestStartFailureShowsServerOutputAndCleansUp(t *testing.T) {
	work := t.TempDir()
	bin := filepath.Join(t.TempDir(), "fake-keelson")
	script := "#!/bin/sh\necho 'unknown flag: --etcd-listen' >&2\nexit 3\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := startServer(context.Background(), serverSpec{Label: "keelson", Bin: bin, Flavor: flavorKeelson}, work)
	if err == nil || !strings.Contains(err.Error(), "unknown flag: --etcd-listen") {
		t.Fatalf("startServer error = %v, want it to quote the server's stderr", err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("data dirs left behind: %v", left)
	}
}

// etcdBin finds the reference etcd built by scripts/bench-kv.sh.
func etcdBin(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real etcd processes")
	}
	bin := os.Getenv("KVBENCH_ETCD_BIN")
	if bin == "" {
		bin = "../../bin/etcd-ref"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("no reference etcd at %s (go build -C bench/etcdref -o $PWD/bin/etcd-ref .): %v", bin, err)
	}
	return bin
}

func TestCompareEtcdWithItself(t *testing.T) {
	bin := etcdBin(t)
	work := t.TempDir()
	p := plan{
		Warmup:  workload{Name: "warmup", Clients: 2, Total: 10},
		Runs:    []workload{{Name: "put 4 clients", Clients: 4, Total: 40, MaxDuration: 20 * time.Second}},
		Fill:    workload{Name: "fill", Clients: 4, Total: 100, MaxDuration: 20 * time.Second},
		WorkDir: work,
	}
	a := serverSpec{Label: "a", Bin: bin, Flavor: flavorEtcd}
	b := serverSpec{Label: "b", Bin: bin, Flavor: flavorEtcd}
	reps, err := compare(context.Background(), quietLog(), a, b, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, rep := range reps {
		r := rep.Results[0]
		if r.Puts != 40 || r.PutsPerSec <= 0 || r.P99Ms < r.P50Ms {
			t.Errorf("%s: run %+v, want 40 puts with p50 <= p99", rep.Label, r)
		}
		if rep.Fill.Puts != 100 || rep.Memory.VmRSSKiB <= 0 {
			t.Errorf("%s: fill %d puts, RSS %d KiB; want 100 puts and a positive RSS", rep.Label, rep.Fill.Puts, rep.Memory.VmRSSKiB)
		}
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("data dirs left behind after the servers stopped: %v", left)
	}
}
