package host

import (
	"bytes"
	"hash"
	"os"
	"sync"
	"syscall"

	"github.com/hashicorp/go-plugin"
)

// fileIdentity is what changes when a file's content can have changed:
// device and inode (a rename over it), size, and modification and change
// times (ctime cannot be set back by the file's owner).
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
	sum          string
}

// verifiedFiles remembers the executables whose checksum matched, by path.
// Every built-in plugin runs from one 80 MB executable; without this, a
// new leader would hash it once per plugin it starts.
var verifiedFiles sync.Map // path -> fileIdentity

func identify(path string, sum []byte) (fileIdentity, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileIdentity{}, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdentity{}, false
	}
	return fileIdentity{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim, sum: string(sum)}, true
}

// checkChecksum reports whether path's content has checksum sum, hashing
// it only if it is not the file already verified with that sum.
func checkChecksum(path string, sum []byte, newHash func() hash.Hash) (bool, error) {
	before, known := identify(path, sum)
	if known {
		if v, ok := verifiedFiles.Load(path); ok && v.(fileIdentity) == before {
			return true, nil
		}
	}
	ok, err := (&plugin.SecureConfig{Checksum: bytes.Clone(sum), Hash: newHash()}).Check(path)
	if err != nil || !ok {
		verifiedFiles.Delete(path)
		return ok, err
	}
	// Remembered only if the file did not change while it was hashed.
	if after, same := identify(path, sum); known && same && after == before {
		verifiedFiles.Store(path, after)
	}
	return true, nil
}
