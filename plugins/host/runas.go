package host

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/hashicorp/go-plugin"
)

// RunAs is the unprivileged identity third-party plugins run as: they get
// neither the host's root nor its data directory (cluster keys, raft log).
// Built-in plugins, which are the host's own code, run as the host.
type RunAs struct {
	UID, GID uint32
	// ExecDir holds the verified copies of third-party executables that the
	// plugins are started from: owned by the host, readable by UID, so that
	// the plugin directory may stay inside the private data directory and
	// the file that runs is the file whose checksum was checked.
	ExecDir string
}

// prepare copies the executable at path into r.ExecDir while hashing
// it, checks the copy against sum, and points cmd at the copy with r's
// identity, no supplementary groups and "/" as working directory.
func (r *RunAs) prepare(cmd *exec.Cmd, name string, sum []byte) error {
	if err := os.MkdirAll(r.ExecDir, 0o755); err != nil {
		return fmt.Errorf("plugin exec dir: %w", err)
	}
	if err := os.Chmod(r.ExecDir, 0o755); err != nil {
		return fmt.Errorf("plugin exec dir: %w", err)
	}
	dst := filepath.Join(r.ExecDir, name+"-"+hex.EncodeToString(sum)[:16])
	if err := copyVerified(cmd.Path, dst, sum); err != nil {
		return err
	}
	cmd.Path = dst
	cmd.Dir = "/"
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.UID, Gid: r.GID, Groups: []uint32{}}
	return nil
}

// copyVerified copies src to dst (mode 0555) through a temporary file,
// hashing what it copies: a swap of src after the check cannot change what
// runs.
func copyVerified(src, dst string, sum []byte) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".copy-*")
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if !bytes.Equal(h.Sum(nil), sum) {
		return plugin.ErrChecksumsDoNotMatch
	}
	if err := os.Chmod(tmp.Name(), 0o555); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

// RunAs is the identity third-party plugins run as; nil: as the host.
func (s *Supervisor) RunAs() *RunAs { return s.cfg.RunAs }
