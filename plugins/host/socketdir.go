package host

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// PrepareSocketDir makes the directory under which go-plugin creates each
// plugin's socket directory ("plugin-dir…", removed when the plugin is
// stopped) for the host whose data dir is dataDir, and empties it: a host
// that was killed (SIGKILL, a power cut) leaves its plugins' directories
// behind, and without one directory per data dir they pile up in the system
// temp dir where nothing can tell whose they are.
//
// It lives in the temp dir, named after the data dir, rather than inside the
// data dir: a Unix socket path must stay under 108 bytes, and a plugin that
// runs as another user (Config.RunAs) must be able to reach its socket
// through the parent, which a private data dir does not allow. Because the
// name is predictable it is made fresh with Mkdir (never followed if it is a
// link) and checked to be this user's own directory.
func PrepareSocketDir(dataDir string) (string, error) {
	dir, err := SocketDir(dataDir)
	if err != nil {
		return "", err
	}
	return dir, prepareRunDir(dir, 0o711)
}

// PrepareExecDir makes, empty, the directory where the host whose data dir
// is dataDir keeps the verified copies of third-party executables that run
// as another user (RunAs.ExecDir): in the temp dir, readable by that user,
// one per data dir so that a killed server's copies go at its next start.
func PrepareExecDir(dataDir string) (string, error) {
	dir, err := ExecDir(dataDir)
	if err != nil {
		return "", err
	}
	return dir, prepareRunDir(dir, 0o755)
}

// prepareRunDir makes dir afresh with mode, refusing one it does not own.
func prepareRunDir(dir string, mode os.FileMode) error {
	if err := prepareRunDirOnce(dir, mode); err != nil {
		return fmt.Errorf("plugin run directory %s: %w", dir, err)
	}
	return nil
}

func prepareRunDirOnce(dir string, mode os.FileMode) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing what a previous run left: %w", err)
	}
	if err := os.Mkdir(dir, mode); err != nil {
		return err
	}
	if err := os.Chmod(dir, mode); err != nil { // the umask applies to Mkdir
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	return ownDirectory(fi)
}

// SocketDir is the plugin socket directory of the host whose data dir is
// dataDir (see PrepareSocketDir).
func SocketDir(dataDir string) (string, error) { return runDir(dataDir, "keelson-sockets-") }

// ExecDir is PrepareExecDir's directory for dataDir.
func ExecDir(dataDir string) (string, error) { return runDir(dataDir, "keelson-exec-") }

// RemoveRunDirs removes the socket and executable directories of the host
// whose data dir is dataDir, once its plugins have stopped: a stopped host
// leaves nothing in the temp dir (a killed one's go at its next start, or
// with `keelson killall`).
func RemoveRunDirs(dataDir string) error {
	var errs []error
	for _, name := range []func(string) (string, error){SocketDir, ExecDir} {
		dir, err := name(dataDir)
		if err == nil {
			err = os.RemoveAll(dir)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runDir names a host's directory in the temp dir after its data dir.
func runDir(dataDir, prefix string) (string, error) {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("plugin run directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(os.TempDir(), prefix+hex.EncodeToString(sum[:6])), nil
}

// ownDirectory checks that fi is a real directory owned by this process's
// user, as one it just made must be.
func ownDirectory(fi fs.FileInfo) error {
	if !fi.IsDir() || fi.Mode()&fs.ModeSymlink != 0 {
		return errors.New("not a directory")
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("owned by uid %d, not by this process (uid %d): another user made it; remove it", st.Uid, os.Geteuid())
	}
	return nil
}
