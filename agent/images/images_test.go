package images

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeImporter records what it imported.
type fakeImporter struct{ got []string }

func (f *fakeImporter) Import(_ context.Context, r io.Reader) ([]string, error) {
	b, _ := io.ReadAll(r)
	f.got = append(f.got, string(b))
	return []string{string(b)}, nil
}

func TestImportsEachArchiveOnce(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Minute)
	write := func(name, body string) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, old, old)
	}
	write("a.tar", "image-a")
	write("b.tar.gz", "image-b")
	write("notes.txt", "not an image")
	fake := &fakeImporter{}
	d := NewDir(dir, filepath.Join(t.TempDir(), "imported.json"), fake, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := context.Background()
	if err := d.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(fake.got) != 2 {
		t.Fatalf("imported %v, want the two archives", fake.got)
	}
	// Again: nothing new. A fresh Dir (an agent restart) agrees.
	d.Scan(ctx)
	NewDir(dir, d.state, fake, d.log).Scan(ctx)
	if len(fake.got) != 2 {
		t.Fatalf("re-imported unchanged archives: %v", fake.got)
	}
	// A changed archive is imported again.
	write("a.tar", "image-a-v2")
	d.Scan(ctx)
	if len(fake.got) != 3 || fake.got[2] != "image-a-v2" {
		t.Fatalf("changed archive: %v", fake.got)
	}
}

func TestCorruptRecordIsMovedAsideAndLogged(t *testing.T) {
	dir, stateDir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.tar"), []byte("image-a"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Minute)
	os.Chtimes(filepath.Join(dir, "a.tar"), old, old)
	state := filepath.Join(stateDir, "imported.json")
	if err := os.WriteFile(state, []byte(`{"a.tar": {"size": 7,`), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	fake := &fakeImporter{}
	d := NewDir(dir, state, fake, slog.New(slog.NewTextHandler(&logs, nil)))
	if err := d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fake.got) != 1 {
		t.Fatalf("imported %v, want the archive imported again after the record was lost", fake.got)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), state) || !strings.Contains(logs.String(), ".corrupt-") {
		t.Fatalf("log %q does not name the file and where it went", logs.String())
	}
	aside, _ := filepath.Glob(state + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt record not kept aside: %v", aside)
	}
	// The fresh record is valid: a restart imports nothing.
	NewDir(dir, state, fake, d.log).Scan(context.Background())
	if len(fake.got) != 1 {
		t.Fatalf("re-imported after a clean record: %v", fake.got)
	}
}
