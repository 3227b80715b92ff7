package pluginbin

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func archive(t *testing.T, content string) Archive {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write([]byte(content)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(content))
	return Archive{Gzip: buf.Bytes(), SHA256: hex.EncodeToString(sum[:])}
}

func TestExtractWritesAnExecutableNamedByItsChecksum(t *testing.T) {
	dir := t.TempDir()
	a := archive(t, "#!/bin/sh\necho plugins\n")
	path, err := Extract(dir, a)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, a.SHA256, FileName); path != want {
		t.Fatalf("path = %s, want %s", path, want)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "#!/bin/sh\necho plugins\n" {
		t.Fatalf("extracted content = %q, %v", b, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o755 {
		t.Fatalf("mode = %v, want 0755", st.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, a.SHA256, ".*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}
}

func TestExtractReusesAMatchingFile(t *testing.T) {
	dir := t.TempDir()
	a := archive(t, "v1")
	path, err := Extract(dir, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	again, err := Extract(dir, a)
	if err != nil || again != path {
		t.Fatalf("second Extract = %s, %v; want %s", again, err, path)
	}
	after, _ := os.Stat(path)
	if !os.SameFile(before, after) {
		t.Fatal("a file with the right checksum was rewritten instead of reused")
	}
	if after.Mode().Perm() != 0o755 {
		t.Fatalf("mode after reuse = %v, want 0755 restored", after.Mode().Perm())
	}
}

func TestExtractReplacesATamperedFile(t *testing.T) {
	dir := t.TempDir()
	a := archive(t, "genuine")
	path, err := Extract(dir, a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("tampered"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(dir, a); err != nil {
		t.Fatal(err)
	}
	if got, _ := FileSHA256(path); got != a.SHA256 {
		t.Fatalf("after re-extraction sha256 = %s, want %s", got, a.SHA256)
	}
}

func TestExtractRemovesOlderVersionsOnly(t *testing.T) {
	dir := t.TempDir()
	old := archive(t, "old")
	if _, err := Extract(dir, old); err != nil {
		t.Fatal(err)
	}
	unrelated := filepath.Join(dir, "not-a-checksum")
	if err := os.Mkdir(unrelated, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(dir, archive(t, "new")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, old.SHA256)); !os.IsNotExist(err) {
		t.Fatalf("older version still there (stat err %v)", err)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Fatalf("a directory that is not a checksum was removed: %v", err)
	}
}

func TestExtractRefusesBadArchives(t *testing.T) {
	good := archive(t, "content")
	other := archive(t, "other")
	for _, tc := range []struct {
		name string
		a    Archive
		want string
	}{
		{"checksum of other content", Archive{Gzip: good.Gzip, SHA256: other.SHA256}, "not the " + other.SHA256},
		{"checksum not hex", Archive{Gzip: good.Gzip, SHA256: "xyz"}, "not 64 lowercase hex digits"},
		{"checksum upper case", Archive{Gzip: good.Gzip, SHA256: strings.ToUpper(good.SHA256)}, "not 64 lowercase hex digits"},
		{"not gzip", Archive{Gzip: []byte("plain"), SHA256: good.SHA256}, "not gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Extract(dir, tc.a)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract err = %v, want one containing %q", err, tc.want)
			}
			if _, serr := os.Stat(filepath.Join(dir, strings.ToLower(tc.a.SHA256), FileName)); !os.IsNotExist(serr) {
				t.Fatalf("a refused archive left an executable behind (stat err %v)", serr)
			}
		})
	}
}

func TestNothingEmbeddedWithoutTheBuildTag(t *testing.T) {
	// go test builds without keelson_embedplugins: the host must fall back
	// to the keelson binary rather than extract an empty file.
	if _, ok := Embedded(); ok {
		t.Fatal("Embedded() reports an archive in a build without the keelson_embedplugins tag")
	}
}
