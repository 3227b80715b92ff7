// Package pluginbin holds the executable that serves keelson's built-in
// plugins (cmd/keelson-plugins, which links only client-go, the plugin SDK
// and the controllers) and puts it on disk. `make build` embeds it in the
// keelson binary, gzip-compressed, with its SHA-256; the server extracts it
// once into its data directory under a directory named by that checksum
// (k3s style), so an upgraded keelson never runs an older copy and an
// unchanged one reuses the file it extracted before.
package pluginbin

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// FileName is the executable's name inside its checksum directory.
const FileName = "keelson-plugins"

// Archive is the embedded executable.
type Archive struct {
	// Gzip is the executable, gzip-compressed.
	Gzip []byte
	// SHA256 is the hex checksum of the uncompressed executable.
	SHA256 string
}

// Embedded returns the archive built into this binary; ok is false in a
// keelson built without it (plain `go build ./cmd/keelson`, `go test`),
// which serves built-in plugins from its own binary instead.
func Embedded() (a Archive, ok bool) {
	if len(embeddedGzip) == 0 {
		return Archive{}, false
	}
	return Archive{Gzip: embeddedGzip, SHA256: strings.TrimSpace(embeddedSHA256)}, true
}

// Extract makes sure dir/SHA256/keelson-plugins holds a's executable and
// returns its path. A file already there is reused when its checksum
// matches and replaced when it does not; other checksum directories (left
// by earlier keelson versions) are removed.
func Extract(dir string, a Archive) (string, error) {
	if !isSHA256(a.SHA256) {
		return "", fmt.Errorf("built-in plugins executable: embedded checksum %q is not 64 lowercase hex digits; rebuild keelson with make build", a.SHA256)
	}
	target := filepath.Join(dir, a.SHA256, FileName)
	if got, err := FileSHA256(target); err == nil && got == a.SHA256 {
		if err := os.Chmod(target, 0o755); err != nil {
			return "", fmt.Errorf("built-in plugins executable: %w", err)
		}
		return target, removeOthers(dir, a.SHA256)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("built-in plugins executable: checking %s: %w", target, err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return "", fmt.Errorf("built-in plugins executable: %w", err)
	}
	if err := writeVerified(target, a); err != nil {
		return "", fmt.Errorf("built-in plugins executable: extracting to %s: %w", target, err)
	}
	return target, removeOthers(dir, a.SHA256)
}

// writeVerified decompresses a into a temporary file beside target, checks
// its checksum and renames it into place, so target is either absent or
// whole and correct, even if keelson dies half-way.
func writeVerified(target string, a Archive) (err error) {
	zr, err := gzip.NewReader(bytes.NewReader(a.Gzip))
	if err != nil {
		return fmt.Errorf("embedded archive is not gzip: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+FileName+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), zr); err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return fmt.Errorf("the embedded executable's sha256 is %s, not the %s recorded beside it; rebuild keelson with make build", got, a.SHA256)
	}
	if err := tmp.Chmod(0o755); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), target)
}

// removeOthers deletes the checksum directories in dir other than keep.
// A plugin still running from one keeps its open file.
func removeOthers(dir, keep string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("built-in plugins executable: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == keep || !isSHA256(name) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("built-in plugins executable: removing an older copy: %w", err)
		}
	}
	return nil
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && strings.ToLower(s) == s
}

// FileSHA256 returns the hex SHA-256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
