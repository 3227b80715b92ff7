package pluginstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newStore(t *testing.T, now func() time.Time) *Store {
	t.Helper()
	s, err := New(filepath.Join(t.TempDir(), "plugin-store"), Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutVerifiesTheChecksum(t *testing.T) {
	s := newStore(t, nil)
	good := []byte("#!/bin/true\n")
	if err := s.Put(sumOf(good), bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(s.Path(sumOf(good)))
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("stored blob %q, %v", got, err)
	}
	if fi, _ := os.Stat(s.Path(sumOf(good))); fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("stored blob is writable: %v", fi.Mode())
	}

	other := []byte("something else")
	err = s.Put(sumOf(good[:3]), bytes.NewReader(other))
	var mm *MismatchError
	if !errors.As(err, &mm) || mm.Got != sumOf(other) {
		t.Fatalf("Put of the wrong content: %v, want a mismatch naming %s", err, sumOf(other))
	}
	if s.Has(sumOf(good[:3])) {
		t.Error("a blob whose content does not match its name was stored")
	}
	assertOnly(t, s, sumOf(good))
}

func TestPutRefusesNamesThatAreNotChecksums(t *testing.T) {
	s := newStore(t, nil)
	for _, name := range []string{"", "../x", strings.Repeat("A", 64), strings.Repeat("0", 63)} {
		if err := s.Put(name, strings.NewReader("x")); err == nil || !strings.Contains(err.Error(), "not a SHA-256 checksum") {
			t.Errorf("Put(%q): %v, want a refusal", name, err)
		}
	}
}

// failingReader yields some bytes, then fails: a peer that dies mid-download.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestPartialDownloadLeavesNothing(t *testing.T) {
	s := newStore(t, nil)
	blob := bytes.Repeat([]byte("plugin"), 10000)
	sum := sumOf(blob)
	err := s.Put(sum, &failingReader{bytes.NewReader(blob[:len(blob)/2])})
	if err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("interrupted Put: %v", err)
	}
	if s.Has(sum) {
		t.Fatal("an interrupted download is in the store")
	}
	assertOnly(t, s)
	// The next attempt succeeds.
	if err := s.Put(sum, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, s, sum)
}

func TestNewRemovesPartialDownloadsOfACrashedProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugin-store")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, partialPrefix+"123"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	assertOnly(t, s)
}

func TestGCKeepsNamedAndYoungBlobs(t *testing.T) {
	now := time.Now()
	s := newStore(t, func() time.Time { return now })
	var sums []string
	for _, c := range []string{"kept", "orphan", "young orphan"} {
		if err := s.Put(sumOf([]byte(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sumOf([]byte(c)))
	}
	kept, orphan, young := sums[0], sums[1], sums[2]
	old := now.Add(-2 * DefaultGCGrace)
	for _, sum := range []string{kept, orphan} {
		if err := os.Chtimes(s.Path(sum), old, old); err != nil {
			t.Fatal(err)
		}
	}
	// Not a blob's name: not the store's to delete.
	if err := os.WriteFile(filepath.Join(s.Dir(), "README"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	removed, err := s.GC(map[string]bool{kept: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{orphan}) {
		t.Errorf("GC removed %v, want only the old unreferenced %s", removed, orphan)
	}
	assertOnly(t, s, kept, young, "README")
}

// assertOnly checks that the store directory holds exactly names.
func assertOnly(t *testing.T, s *Store, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(got)
	slices.Sort(names)
	if !slices.Equal(got, names) {
		t.Errorf("store holds %v, want %v", got, names)
	}
}
