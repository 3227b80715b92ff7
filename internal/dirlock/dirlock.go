// Package dirlock makes a data dir belong to one keelson process at a time:
// a second server or agent on the same --data-dir would corrupt the raft
// log, the state files and the containers of the first. The lock is an
// advisory flock on a file in the dir, so the kernel releases it when the
// holder dies, even by kill -9: a crash never leaves a stale lock behind.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file in a data dir; it holds the holder's PID.
const FileName = "keelson.lock"

// Lock is a held data dir lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock of dir for this process, creating dir if needed.
// flag names the setting the operator changes to pick another dir (e.g.
// "--data-dir"). When another live process holds it, the error names that
// process's PID.
func Acquire(dir, flag string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s %s: %w", flag, dir, err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s %s: opening the lock file: %w", flag, dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s %s is in use by another keelson process%s: stop it first, or give this one its own %s",
				flag, dir, holder(path), flag)
		}
		return nil, fmt.Errorf("%s %s: locking %s: %w", flag, dir, path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// holder describes the process the lock file names, "" when unknown.
func holder(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return ""
	}
	return fmt.Sprintf(" (PID %d)", pid)
}

// Release gives the lock up. The PID is left in the file: a stale PID is
// harmless, since only a held flock means "in use".
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}
