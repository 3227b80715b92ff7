package volumes

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is one file of a projected volume.
type File struct {
	Data []byte
	Mode os.FileMode
}

// dataLink is the symlink naming the current payload directory, as kubelet
// lays out configMap, secret, downwardAPI and projected volumes: every
// visible name is a link through ..data, so swapping ..data changes the
// whole volume at once.
const dataLink = "..data"

// writeAtomic makes dir hold exactly payload (relative path -> file),
// atomically for readers, and reports whether anything changed. gid, when
// not negative, owns the files (fsGroup).
func writeAtomic(dir string, payload map[string]File, gid int) (bool, error) {
	for p := range payload {
		if err := validPath(p); err != nil {
			return false, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	current, _ := os.Readlink(filepath.Join(dir, dataLink))
	if current != "" && samePayload(filepath.Join(dir, current), payload) {
		return false, nil
	}
	ts := fmt.Sprintf("..%s.%s", time.Now().UTC().Format("2006_01_02_15_04_05"), randomSuffix())
	tsDir := filepath.Join(dir, ts)
	if err := os.Mkdir(tsDir, 0o755); err != nil {
		return false, err
	}
	for p, f := range payload {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return false, err
		}
		if err := os.Chmod(full, f.Mode); err != nil { // past the umask
			return false, err
		}
		if gid >= 0 {
			if err := os.Lchown(full, -1, gid); err != nil {
				return false, err
			}
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	os.Remove(tmpLink)
	if err := os.Symlink(ts, tmpLink); err != nil {
		return false, err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		return false, err
	}
	// Visible names: one link per top-level entry of the payload.
	want := map[string]bool{}
	for p := range payload {
		top := strings.SplitN(p, "/", 2)[0]
		want[top] = true
		link := filepath.Join(dir, top)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, top) {
			continue
		}
		os.Remove(link)
		if err := os.Symlink(filepath.Join(dataLink, top), link); err != nil {
			return false, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case name == dataLink || name == ts:
		case strings.HasPrefix(name, ".."):
			os.RemoveAll(filepath.Join(dir, name)) // an older payload
		case !want[name]:
			os.Remove(filepath.Join(dir, name)) // a key that is gone
		}
	}
	return true, nil
}

func samePayload(dir string, payload map[string]File) bool {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		rel, _ := filepath.Rel(dir, path)
		f, ok := payload[rel]
		if !ok {
			return errors.New("extra file")
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != f.Mode.Perm() {
			return errors.New("mode differs")
		}
		data, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(data, f.Data) {
			return errors.New("content differs")
		}
		return nil
	})
	return err == nil && n == len(payload)
}

// validPath refuses a payload path that could leave the volume.
func validPath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "..") || slices.Contains(strings.Split(p, "/"), "..") {
		return fmt.Errorf("invalid path %q in volume: must be relative and must not contain '..'", p)
	}
	return nil
}

func randomSuffix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
