// Package snapshots takes a server's scheduled snapshots of the store: on a
// cron schedule it saves one into a directory under a name that sorts by
// time, then deletes the oldest beyond the retention. Saving itself (a
// linearizable read and a verified snapshot file) is the caller's, passed
// in; the clock is injected, so the schedule is tested without waiting.
package snapshots

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/robfig/cron/v3"
)

// Options configure a Scheduler.
type Options struct {
	// Dir holds the snapshots; created if absent.
	Dir string
	// Node is the server's name, part of each file's name.
	Node string
	// Schedule says when to take one.
	Schedule cron.Schedule
	// Retention is how many scheduled snapshots to keep (at least 1).
	Retention int
	// Save writes a complete, verified snapshot file at path.
	Save func(ctx context.Context, path string) error
	// Clock defaults to the real one.
	Clock  clockwork.Clock
	Logger *slog.Logger
}

// File is one scheduled snapshot.
type File struct {
	Name string
	Path string
	// Taken is when it was taken, from its name.
	Taken time.Time
	Size  int64
}

// prefix and suffix frame every scheduled snapshot's name; only such files
// are listed and deleted, never anything else in Dir.
const (
	prefix     = "keelson-snapshot-"
	suffix     = ".snap"
	timeFormat = "20060102T150405.000Z"
)

// Name is the file name of a snapshot node takes at t: names sort in the
// order they were taken.
func Name(node string, t time.Time) string {
	return prefix + node + "-" + t.UTC().Format(timeFormat) + suffix
}

// parseName returns when the snapshot named name was taken; ok is false
// for a file that is not a scheduled snapshot.
func parseName(name string) (time.Time, bool) {
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, suffix) {
		return time.Time{}, false
	}
	rest := strings.TrimSuffix(name, suffix)
	i := strings.LastIndexByte(rest, '-')
	if i < len(prefix) {
		return time.Time{}, false
	}
	t, err := time.Parse(timeFormat, rest[i+1:])
	return t, err == nil
}

// List returns the scheduled snapshots in dir, oldest first; none when dir
// does not exist.
func List(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing snapshots: %w", err)
	}
	var out []File
	for _, e := range entries {
		t, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		f := File{Name: e.Name(), Path: filepath.Join(dir, e.Name()), Taken: t}
		if info, err := e.Info(); err == nil {
			f.Size = info.Size()
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b File) int { return a.Taken.Compare(b.Taken) })
	return out, nil
}

// Run takes a snapshot at every time the schedule names until ctx ends. A
// failed snapshot is logged and the next one still taken: the schedule
// never stops for one error.
func Run(ctx context.Context, opts Options) error {
	if opts.Clock == nil {
		opts.Clock = clockwork.NewRealClock()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Retention < 1 {
		return fmt.Errorf("snapshots: retention %d keeps nothing", opts.Retention)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return fmt.Errorf("snapshots: directory (snapshots.dir, --snapshot-dir): %w", err)
	}
	for {
		now := opts.Clock.Now()
		next := opts.Schedule.Next(now)
		select {
		case <-ctx.Done():
			return nil
		case <-opts.Clock.After(next.Sub(now)):
		}
		f, removed, err := Take(ctx, opts, next)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			opts.Logger.Error("scheduled snapshot failed; the next one is still taken on schedule", "err", err)
			continue
		}
		opts.Logger.Info("scheduled snapshot taken", "file", f.Path, "bytes", f.Size, "deleted_old", removed)
	}
}

// Take saves one snapshot named for time t, then deletes the oldest beyond
// the retention; it returns the new file and the names deleted.
func Take(ctx context.Context, opts Options, t time.Time) (File, []string, error) {
	name := Name(opts.Node, t)
	path := filepath.Join(opts.Dir, name)
	if err := opts.Save(ctx, path); err != nil {
		return File{}, nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	f := File{Name: name, Path: path, Taken: t}
	if info, err := os.Stat(path); err == nil {
		f.Size = info.Size()
	}
	removed, err := prune(opts.Dir, opts.Node, opts.Retention)
	return f, removed, err
}

// prune deletes node's oldest scheduled snapshots beyond keep; other
// servers' snapshots in a shared directory are theirs to prune.
func prune(dir, node string, keep int) ([]string, error) {
	all, err := List(dir)
	if err != nil {
		return nil, err
	}
	files := slices.DeleteFunc(all, func(f File) bool { return !strings.HasPrefix(f.Name, prefix+node+"-") })
	if len(files) <= keep {
		return nil, nil
	}
	var removed []string
	var errs []error
	for _, f := range files[:len(files)-keep] {
		if err := os.Remove(f.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("deleting old snapshot: %w", err))
			continue
		}
		removed = append(removed, f.Name)
	}
	return removed, errors.Join(errs...)
}
