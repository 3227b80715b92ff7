package snapshots

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/robfig/cron/v3"
)

// TestRunOnScheduleWithRetention: with "*/5 * * * *" from 12:03, snapshots
// are taken at 12:05, 12:10, 12:15 and 12:20 (one of them failing), each
// named for its time; retention 2 keeps the newest two of this server and
// never touches another server's snapshot or an unrelated file.
func TestRunOnScheduleWithRetention(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{Name("s2", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Date(2026, 5, 1, 12, 3, 0, 0, time.UTC)
	clock := clockwork.NewFakeClockAt(start)
	sched, err := cron.ParseStandard("*/5 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	saved := make(chan string, 10)
	opts := Options{Dir: dir, Node: "s1", Schedule: sched, Retention: 2, Clock: clock,
		Save: func(_ context.Context, path string) error {
			if calls.Add(1) == 2 {
				saved <- ""
				return errors.New("no leader")
			}
			saved <- filepath.Base(path)
			return os.WriteFile(path, []byte("snapshot"), 0o600)
		}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()

	var got []string
	for i := 0; i < 4; i++ {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(5 * time.Minute)
		got = append(got, <-saved)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil { // the fourth is pruned and Run waits again
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	at := func(h, m int) string { return Name("s1", time.Date(2026, 5, 1, h, m, 0, 0, time.UTC)) }
	want := []string{at(12, 5), "", at(12, 15), at(12, 20)}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("save %d: %q, want %q", i, got[i], want[i])
		}
	}
	files, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	wantLeft := []string{Name("s2", time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)), at(12, 15), at(12, 20)}
	if len(names) != len(wantLeft) {
		t.Fatalf("left %v, want %v", names, wantLeft)
	}
	for i := range names {
		if names[i] != wantLeft[i] {
			t.Errorf("left %v, want %v", names, wantLeft)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("an unrelated file was deleted: %v", err)
	}
}

func TestParseName(t *testing.T) {
	tm := time.Date(2026, 5, 1, 12, 3, 4, 5e6, time.UTC)
	if got, ok := parseName(Name("my-server-1", tm)); !ok || !got.Equal(tm) {
		t.Errorf("parseName(Name) = %v, %v; want %v", got, ok, tm)
	}
	for _, bad := range []string{"keelson-snapshot-.snap", "backup.snap", "keelson-snapshot-s1-yesterday.snap", "keelson-snapshot-s1-20260501T120304.005Z.snap.tmp"} {
		if _, ok := parseName(bad); ok {
			t.Errorf("parseName(%q) accepted", bad)
		}
	}
}
