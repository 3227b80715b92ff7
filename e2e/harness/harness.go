// Package harness holds what every end-to-end test package needs to run
// real keelson processes: finding the binary under test, servers and
// clusters of them, kubectl. The processes themselves are started and
// stopped by internal/testproc, which the benchmarks share.
package harness

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// KeelsonBin returns the binary under test (KEELSON_BIN, or bin/keelson at
// the repository root), or skips the test when it has not been built.
func KeelsonBin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("KEELSON_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "bin", "keelson")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("resolving KEELSON_BIN %q: %v", bin, err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("keelson binary not found at %s (%v): run `make build` first, or set KEELSON_BIN", abs, err)
	}
	return abs
}

// Eventually polls cond every 250 ms until it holds, and fails the test
// after timeout with what it waited for and the last state cond described.
// The timeout is a hang guard on a busy machine, not a timing claim.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
