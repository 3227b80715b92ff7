// Package harness holds what every end-to-end test package needs to run
// real keelson processes: finding the binary under test and reading the
// tails of their logs.
package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// Tail returns the last n lines of a log file, leaving out grpc-go's
// connection chatter and the embedded kube-apiserver's etcd client retries,
// which bury everything else once peers go away or the raft leader changes.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", path, err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(l, `msg="[core] `) && !strings.Contains(l, `"msg":"retrying of unary invoker failed"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
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
