// Package quota bounds the directory of a local-path volume to its
// capacity, with what the filesystem holding the agent's storage directory
// offers, from pure to effectful:
//
//   - Kind and the reasons in detect.go: which mechanism a filesystem
//     type offers, and why none does (pure);
//   - project-id allocation (nextProjectID, pure);
//   - btrfs.go: each volume a subvolume whose qgroup is limited to the
//     capacity (ioctls);
//   - project.go: on xfs or ext4 mounted with project quotas, each volume
//     a directory with its own project id and a project quota (ioctls and
//     quotactl_fd). This path needs a kernel with CONFIG_QUOTA; Keelson's
//     test machines have none, so it has only been unit-tested in parts.
//
// Anything else gets a plain directory and a Result saying the capacity is
// not enforced, and why.
package quota

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Kind names the mechanism that enforces a volume's capacity.
type Kind string

const (
	// None: a plain directory; it may grow until the disk is full.
	None Kind = ""
	// BtrfsQgroup: a btrfs subvolume with a qgroup limit on referenced
	// bytes.
	BtrfsQgroup Kind = "btrfs-qgroup"
	// ProjectQuota: a directory with its own project id and a hard block
	// limit on that project (xfs, ext4 with prjquota).
	ProjectQuota Kind = "project-quota"
)

// Result says how a volume's capacity is held.
type Result struct {
	// Kind is the mechanism; None when not enforced.
	Kind Kind
	// Reason says why the capacity is not enforced (empty when it is).
	Reason string
}

// Enforced reports whether writes past the capacity fail.
func (r Result) Enforced() bool { return r.Kind != None }

// Dir makes, resizes and removes volume directories under one storage
// directory. Its methods are safe for concurrent use.
type Dir struct {
	root string
	log  *slog.Logger
	// mu serializes project-id allocation with the directory creation
	// that claims the id.
	mu sync.Mutex
}

// New returns the Dir of storage directory root.
func New(root string, log *slog.Logger) *Dir {
	if log == nil {
		log = slog.Default()
	}
	return &Dir{root: root, log: log}
}

// Ensure makes the directory of volume name if it is missing, bounded to
// capacity bytes where the filesystem allows, and raises (or sets) the
// bound of an existing one. A directory made before (or on a filesystem
// without a mechanism) keeps working, unbounded, and the Result says so.
func (d *Dir) Ensure(name string, capacity int64) (Result, error) {
	if capacity <= 0 {
		return Result{}, fmt.Errorf("volume %s: capacity %d bytes is not positive", name, capacity)
	}
	if err := os.MkdirAll(d.root, 0o711); err != nil {
		return Result{}, fmt.Errorf("storage dir %s: %w", d.root, err)
	}
	kind, reason, err := detect(d.root)
	if err != nil {
		return Result{}, err
	}
	path := filepath.Join(d.root, name)
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err = os.Lstat(path)
	made := errors.Is(err, fs.ErrNotExist)
	var res Result
	switch kind {
	case BtrfsQgroup:
		res, err = ensureSubvolume(d.root, name, capacity)
	case ProjectQuota:
		res, err = ensureProject(d.root, name, capacity)
	default:
		res, err = Result{Reason: reason}, ensurePlain(path)
	}
	if err != nil || !made {
		return res, err
	}
	// Writable by every user, as the containers' users are unknown; an
	// existing directory keeps its mode (a pod's fsGroup set its group
	// bits and setgid).
	return res, os.Chmod(path, 0o777)
}

// ensurePlain makes an unbounded directory.
func ensurePlain(path string) error {
	if err := os.Mkdir(path, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", path, err)
	}
	return nil
}

// Remove removes the directory of volume name with what is in it (a
// subvolume is destroyed). A directory already gone is not an error.
func (d *Dir) Remove(name string) error {
	path := filepath.Join(d.root, name)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	sub, err := isSubvolume(path)
	if err != nil {
		return err
	}
	if sub {
		return destroySubvolume(d.root, name)
	}
	if err := os.RemoveAll(path); err != nil {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}
