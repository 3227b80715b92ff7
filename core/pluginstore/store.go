// Package pluginstore is a server's content-addressed store of third-party
// plugin executables: DATA_DIR/plugin-store/<sha256>. A blob enters the store
// only through Put, which hashes what it writes into a temporary file and
// renames it into place only when the hash is the name, so a partial or
// corrupted download is never executable under a checksum's name.
package pluginstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// partialPrefix names the temporary files of downloads in progress; a
// crash leaves them behind and New removes them.
const partialPrefix = ".partial-"

// DefaultGCGrace is how long an unreferenced blob is kept: `keelson plugin
// install` stores the executable before it writes the install record, and
// a garbage collection in between must not delete it.
const DefaultGCGrace = 10 * time.Minute

// Store is the blob directory. Safe for concurrent use by one process;
// blobs are immutable once in place.
type Store struct {
	dir   string
	grace time.Duration
	now   func() time.Time
}

// Options tune a Store; zero values take the defaults.
type Options struct {
	// GCGrace is DefaultGCGrace unless set.
	GCGrace time.Duration
	// Now is the clock GC compares modification times with; default time.Now.
	Now func() time.Time
}

// New opens (creating it, mode 0700) the store in dir and removes partial
// downloads a previous process left.
func New(dir string, opts Options) (*Store, error) {
	if opts.GCGrace == 0 {
		opts.GCGrace = DefaultGCGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("plugin store %s: %w", dir, err)
	}
	s := &Store{dir: dir, grace: opts.GCGrace, now: opts.Now}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("plugin store %s: %w", dir, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), partialPrefix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("plugin store: removing partial download: %w", err)
			}
		}
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// ValidSum checks that sum is a lower-case hex SHA-256, the only names the
// store has (it is also what keeps a name from being a path).
func ValidSum(sum string) error {
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != sha256.Size || strings.ToLower(sum) != sum {
		return fmt.Errorf("%q is not a SHA-256 checksum (64 lower-case hex digits, as sha256sum prints it)", sum)
	}
	return nil
}

// Path is where the blob with checksum sum lives (whether or not it does).
func (s *Store) Path(sum string) string { return filepath.Join(s.dir, sum) }

// Has reports whether the blob with checksum sum is in the store.
func (s *Store) Has(sum string) bool {
	if ValidSum(sum) != nil {
		return false
	}
	fi, err := os.Stat(s.Path(sum))
	return err == nil && fi.Mode().IsRegular()
}

// Open opens the blob with checksum sum for reading.
func (s *Store) Open(sum string) (*os.File, error) {
	if err := ValidSum(sum); err != nil {
		return nil, err
	}
	f, err := os.Open(s.Path(sum))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("plugin executable %s is not in this server's store: %w", sum, ErrNotFound)
	}
	return f, err
}

// ErrNotFound is the error Open wraps for a blob the store lacks.
var ErrNotFound = errors.New("not found")

// MismatchError is a Put whose content did not hash to the expected sum.
type MismatchError struct{ Want, Got string }

func (e *MismatchError) Error() string {
	return fmt.Sprintf("plugin executable's sha256 is %s, expected %s: nothing stored", e.Got, e.Want)
}

// Put stores what r yields as the blob sum, or nothing: the content is
// written to a partial file, hashed as it is written, synced, and renamed to
// its name only if its SHA-256 is sum. A blob already present is kept (r is
// not read).
func (s *Store) Put(sum string, r io.Reader) error {
	if err := ValidSum(sum); err != nil {
		return err
	}
	if s.Has(sum) {
		return nil
	}
	tmp, err := os.CreateTemp(s.dir, partialPrefix+"*")
	if err != nil {
		return fmt.Errorf("plugin store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("plugin store: receiving %s: %w", sum, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return &MismatchError{Want: sum, Got: got}
	}
	if err := os.Chmod(tmp.Name(), 0o500); err != nil {
		return fmt.Errorf("plugin store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.Path(sum)); err != nil {
		return fmt.Errorf("plugin store: %w", err)
	}
	return nil
}

// PutFile stores the file at path under its own checksum and returns it.
func (s *Store) PutFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	// Put hashes again while copying: the file may change in between.
	return sum, s.Put(sum, f)
}

// GC removes every blob whose checksum keep lacks, once it is older than
// the grace period, and returns the removed checksums. Other files (not a
// checksum's name) are left alone except stale partial downloads.
func (s *Store) GC(keep map[string]bool) ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("plugin store %s: %w", s.dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		partial := strings.HasPrefix(name, partialPrefix)
		if keep[name] || (!partial && ValidSum(name) != nil) {
			continue
		}
		fi, err := e.Info()
		if err != nil || s.now().Sub(fi.ModTime()) < s.grace {
			continue // vanished, or too young: an install or download in progress
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		if !partial {
			removed = append(removed, name)
		}
	}
	return removed, errors.Join(errs...)
}
