// Package statefile keeps small JSON state files durable: a write replaces
// the file atomically and survives a crash or power loss (temporary file,
// fsync, rename, fsync of the directory), and a file found corrupt is moved
// aside, never silently ignored.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Write replaces path with data: readers see the old content or the new,
// never a part, and after Write returns the new content is on disk.
func Write(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	// The rename is durable only once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync of %s: %w", path, dir, err)
	}
	return nil
}

// WriteJSON writes v as indented JSON with Write.
func WriteJSON(path string, v any, perm os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return Write(path, append(b, '\n'), perm)
}

// CorruptError says a state file could not be decoded and where it was
// moved so that a fresh one can start.
type CorruptError struct {
	Path  string // the file
	Aside string // where it is now; empty if it could not be moved
	Err   error  // why it could not be read
}

func (e *CorruptError) Error() string {
	if e.Aside == "" {
		return fmt.Sprintf("state file %s is corrupt (%v) and could not be moved aside", e.Path, e.Err)
	}
	return fmt.Sprintf("state file %s is corrupt (%v): moved to %s, starting with an empty state", e.Path, e.Err, e.Aside)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// LoadJSON decodes path into v. A missing file leaves v alone and returns
// nil. A file that does not decode is renamed to PATH.corrupt-TIMESTAMP
// (now, UTC) for an operator to inspect, v is left alone, and a
// *CorruptError says so: the caller starts fresh and logs it.
func LoadJSON(path string, v any, now time.Time) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	derr := json.Unmarshal(b, v)
	if derr == nil {
		return nil
	}
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return &CorruptError{Path: path, Err: errors.Join(derr, err)}
	}
	return &CorruptError{Path: path, Aside: aside, Err: derr}
}
