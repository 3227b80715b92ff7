package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelson/keelson/internal/join"
)

func TestKnownServersSurviveAndCorruptionIsReported(t *testing.T) {
	var logs strings.Builder
	a := &Agent{dir: t.TempDir(), log: slog.New(slog.NewTextHandler(&logs, nil))}
	want := []join.Server{{API: "10.0.0.1:6443", Gossip: "10.0.0.1:7946"}}
	a.saveServers(want)
	if got := a.loadServers(); len(got) != 1 || got[0].API != want[0].API {
		t.Fatalf("read back %+v", got)
	}
	// A torn file (a crash mid-write on an older agent) is not silently
	// taken as "no servers": it is reported and kept for inspection.
	if err := os.WriteFile(a.knownServersFile(), []byte(`[{"api":"10.0`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := a.loadServers(); got != nil {
		t.Fatalf("corrupt file read as %+v", got)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), a.knownServersFile()) {
		t.Fatalf("log %q does not report the corrupt file", logs.String())
	}
	if aside, _ := filepath.Glob(a.knownServersFile() + ".corrupt-*"); len(aside) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", aside)
	}
	a.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	a.saveServers(want)
	if got := a.loadServers(); len(got) != 1 {
		t.Fatalf("fresh file after corruption: %+v", got)
	}
}
