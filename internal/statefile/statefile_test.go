package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, v := range []map[string]int{{"a": 1}, {"b": 2}} {
		if err := WriteJSON(p, v, 0o600); err != nil {
			t.Fatal(err)
		}
		var got map[string]int
		if err := LoadJSON(p, &got, time.Now()); err != nil || len(got) != 1 {
			t.Fatalf("read back %v, %v", got, err)
		}
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left behind: %v", entries)
	}
}

func TestLoadMissingIsEmpty(t *testing.T) {
	var v []string
	if err := LoadJSON(filepath.Join(t.TempDir(), "none.json"), &v, time.Now()); err != nil || v != nil {
		t.Fatalf("%v %v", v, err)
	}
}

func TestCorruptFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "servers.json")
	if err := os.WriteFile(p, []byte(`[{"name":"s1"`), 0o600); err != nil { // torn write
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 4, 5, 6, 0, time.UTC)
	var v []map[string]string
	err := LoadJSON(p, &v, now)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a CorruptError", err)
	}
	want := p + ".corrupt-20261206T040506Z"
	if ce.Aside != want || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), want) {
		t.Fatalf("%v (aside %q), want it moved to %s and both named", err, ce.Aside, want)
	}
	if b, err := os.ReadFile(want); err != nil || string(b) != `[{"name":"s1"` {
		t.Fatalf("the corrupt content was not kept: %q %v", b, err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the corrupt file is still in place: %v", err)
	}
	if err := LoadJSON(p, &v, now); err != nil || v != nil {
		t.Fatalf("after moving aside: %v %v, want a fresh empty state", v, err)
	}
}
