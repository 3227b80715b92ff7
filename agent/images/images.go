// Package images imports image tarballs dropped into the agent's images
// directory (air-gapped installs): each new or changed file is imported into
// containerd once, and the directory is watched for more.
package images

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelson/keelson/internal/statefile"
)

// Importer loads tarballs into the runtime.
type Importer interface {
	Import(ctx context.Context, r io.Reader) ([]string, error)
}

// Dir imports the tarballs of one directory.
type Dir struct {
	path  string
	state string // records what was imported, so a restart does not redo it
	rt    Importer
	log   *slog.Logger
}

// NewDir watches path; stateFile records imported files.
func NewDir(path, stateFile string, rt Importer, log *slog.Logger) *Dir {
	return &Dir{path: path, state: stateFile, rt: rt, log: log}
}

// suffixes are the archive names imported: docker save and OCI layouts,
// plain or compressed.
var suffixes = []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"}

type stamp struct {
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// Scan imports every archive that is new or changed since it was imported.
// A broken archive is logged and retried when it changes.
func (d *Dir) Scan(ctx context.Context) error {
	entries, err := os.ReadDir(d.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	done := d.load()
	changed := false
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !hasSuffix(name) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		st := stamp{Size: info.Size(), ModTime: info.ModTime().UTC()}
		if prev, ok := done[name]; ok && prev == st {
			continue
		}
		// A file still being copied in changes size; wait for it to settle.
		if time.Since(info.ModTime()) < 2*time.Second {
			continue
		}
		names, err := d.importFile(ctx, filepath.Join(d.path, name))
		if err != nil {
			d.log.Error("importing image archive", "file", name, "err", err)
		} else {
			d.log.Info("imported image archive", "file", name, "images", names)
		}
		done[name] = st // a broken file is not retried until it changes
		changed = true
	}
	if changed {
		return d.save(done)
	}
	return nil
}

func (d *Dir) importFile(ctx context.Context, path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return d.rt.Import(ctx, f)
}

// Run scans every interval until ctx ends.
func (d *Dir) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.Scan(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("scanning the images directory", "err", err)
		}
	}
}

func hasSuffix(name string) bool {
	for _, s := range suffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// load reads what was imported. A corrupt record is moved aside and the
// scan starts fresh: losing it only costs re-importing the tarballs, which
// is idempotent.
func (d *Dir) load() map[string]stamp {
	out := map[string]stamp{}
	if err := statefile.LoadJSON(d.state, &out, time.Now()); err != nil {
		d.log.Error("the imported-images record is unreadable: every tarball in the images directory is imported again", "file", d.state, "err", err)
		return map[string]stamp{}
	}
	return out
}

func (d *Dir) save(done map[string]stamp) error {
	if err := statefile.WriteJSON(d.state, done, 0o600); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}
