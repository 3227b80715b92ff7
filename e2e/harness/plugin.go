package harness

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildPlugin builds the Go package pkg (a third-party plugin, such as one
// of examples/plugins) into a new directory as the executable name, and
// returns its path and hex SHA-256: a plugin directory and the checksum
// its declaration pins.
func BuildPlugin(t testing.TB, pkg, name string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-trimpath", "-o", path, pkg)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building plugin %s: %v\n%s", pkg, err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return path, hex.EncodeToString(h[:])
}
