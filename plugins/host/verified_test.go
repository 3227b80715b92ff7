package host

import (
	"crypto/sha256"
	"hash"
	"os"
	"path/filepath"
	"testing"
)

// An executable started many times is hashed once; once it changes, it is
// hashed again and refused.
func TestChecksumVerifiedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(path, []byte("plugin v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("plugin v1"))
	hashes := 0
	newHash := func() hash.Hash { hashes++; return sha256.New() }
	for range 3 {
		if ok, err := checkChecksum(path, sum[:], newHash); !ok || err != nil {
			t.Fatalf("checksum of the pinned file: %v %v", ok, err)
		}
	}
	if hashes != 1 {
		t.Fatalf("hashed %d times for three starts, want 1", hashes)
	}
	if err := os.WriteFile(path, []byte("plugin v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if ok, _ := checkChecksum(path, sum[:], newHash); ok {
		t.Fatal("a changed file passed its old checksum")
	}
	if hashes != 2 {
		t.Fatalf("the changed file was not hashed again (%d hashes)", hashes)
	}
}
