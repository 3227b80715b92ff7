package host

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareSocketDir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dataDir := t.TempDir()
	dir, err := PrepareSocketDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dir, os.TempDir()) {
		t.Fatalf("socket dir %s is not in the temp dir %s", dir, os.TempDir())
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o711 {
		t.Fatalf("socket dir: %v, mode %v; want 0711", err, fi.Mode().Perm())
	}
	// What a killed host left behind goes at the next start.
	stale := filepath.Join(dir, "plugin-dir123")
	if err := os.Mkdir(stale, 0o700); err != nil {
		t.Fatal(err)
	}
	again, err := PrepareSocketDir(dataDir)
	if err != nil || again != dir {
		t.Fatalf("second prepare: %s, %v; want %s", again, err, dir)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale plugin-dir survived: %v", err)
	}
	// Another data dir has its own.
	other, err := PrepareSocketDir(t.TempDir())
	if err != nil || other == dir {
		t.Fatalf("another data dir got %s, %v", other, err)
	}
}

func TestPrepareSocketDirRefusesALink(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dataDir := t.TempDir()
	dir, err := SocketDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	keep := filepath.Join(target, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareSocketDir(dataDir); err != nil {
		t.Fatal(err)
	}
	// The link was removed, not followed: what it pointed at is intact.
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("the link's target lost its file: %v", err)
	}
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("socket dir is not a fresh directory: %v", err)
	}
}

// TestPluginSocketsLiveInTheSocketDir: each plugin's go-plugin socket
// directory is made under Config.SocketDir and removed when it stops.
func TestPluginSocketsLiveInTheSocketDir(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.SocketDir = t.TempDir()
	s := startSupervisor(t, cfg, spec("alpha", "healthy"))
	waitFor(t, s, "alpha", func(st PluginStatus) bool { return st.State == StateRunning && st.Ready })
	entries, err := os.ReadDir(cfg.SocketDir)
	if err != nil || len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "plugin-dir") {
		t.Fatalf("socket dir holds %v (%v); want one plugin-dir", entries, err)
	}
	s.Stop()
	if entries, _ := os.ReadDir(cfg.SocketDir); len(entries) != 0 {
		t.Fatalf("socket dir still holds %v after Stop", entries)
	}
}

// TestPrepareExecDir: the executables' directory is the data dir's own,
// readable by a plugin's user, and emptied at every prepare.
func TestPrepareExecDir(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dataDir := t.TempDir()
	dir, err := PrepareExecDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("exec dir %s: %v, want mode 0755", dir, err)
	}
	if sockets, _ := SocketDir(dataDir); sockets == dir {
		t.Fatalf("exec and socket directories are one: %s", dir)
	}
	copyOf := filepath.Join(dir, "plugin-copy")
	if err := os.WriteFile(copyOf, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if again, err := PrepareExecDir(dataDir); err != nil || again != dir {
		t.Fatalf("second prepare: %s, %v", again, err)
	}
	if _, err := os.Stat(copyOf); !os.IsNotExist(err) {
		t.Fatalf("a previous run's copy survived: %v", err)
	}
}

// TestRemoveRunDirs: a stopped host leaves neither of its directories in
// the temp dir, and removing them again is not an error.
func TestRemoveRunDirs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	dataDir := t.TempDir()
	sockets, err := PrepareSocketDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	execs, err := PrepareExecDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(execs, "plugin-copy"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := RemoveRunDirs(dataDir); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{sockets, execs} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", dir, err)
		}
	}
}
