package host

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/internal/pluginbin"
)

// testArchive embeds the test plugin as make build embeds keelson-plugins.
func testArchive(t *testing.T) func() (pluginbin.Archive, bool) {
	t.Helper()
	b, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return func() (pluginbin.Archive, bool) {
		return pluginbin.Archive{Gzip: buf.Bytes(), SHA256: hex.EncodeToString(sum[:])}, true
	}
}

func TestBuiltinsRunFromTheExtractedExecutable(t *testing.T) {
	dataDir := t.TempDir()
	embedded := testArchive(t)
	bin, err := resolveBuiltinBinary(dataDir, embedded)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := embedded()
	if want := filepath.Join(dataDir, "bin", a.SHA256, pluginbin.FileName); bin.Path != want || bin.SHA256 != a.SHA256 || len(bin.Prefix) != 0 {
		t.Fatalf("resolved %+v; want %s pinned to %s, no prefix", bin, want, a.SHA256)
	}
	sp := BuiltinSpec(bin, "alpha", spec("alpha", "healthy").Config)
	if !sp.Builtin || !slices.Equal(sp.Args, []string{"alpha"}) {
		t.Fatalf("spec %+v: want a built-in run as `keelson-plugins alpha`", sp)
	}
	s := startSupervisor(t, testConfig(&syncBuffer{}), sp)
	waitFor(t, s, "alpha", func(st PluginStatus) bool { return st.State == StateRunning && st.Ready })
}

// A built-in's extracted executable is pinned like a third-party plugin:
// a modified file is refused, with how to recover, never run.
func TestModifiedBuiltinExecutableIsRefused(t *testing.T) {
	bin, err := resolveBuiltinBinary(t.TempDir(), testArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin.Path, []byte("#!/bin/sh\necho replaced\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := startSupervisor(t, testConfig(&syncBuffer{}), BuiltinSpec(bin, "alpha", nil))
	st := waitFor(t, s, "alpha", func(st PluginStatus) bool { return st.State == StateRefused })
	for _, want := range []string{bin.Path, bin.SHA256, "restart keelson"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("refusal %q does not contain %q", st.LastError, want)
		}
	}
	if st.PID != 0 || st.Restarts != 0 {
		t.Errorf("a refused built-in must not run: %+v", st)
	}
}

// Without an embedded executable (go build, go test) built-ins re-execute
// the running binary as `keelson plugin NAME`, unpinned.
func TestBuiltinsWithoutEmbeddedExecutableRunTheBinaryItself(t *testing.T) {
	dataDir := t.TempDir()
	bin, err := resolveBuiltinBinary(dataDir, func() (pluginbin.Archive, bool) { return pluginbin.Archive{}, false })
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	if bin.Path != self || !slices.Equal(bin.Prefix, []string{"plugin"}) || bin.SHA256 != "" {
		t.Fatalf("resolved %+v; want %s plugin NAME, unpinned", bin, self)
	}
	if sp := BuiltinSpec(bin, "podgc", nil); !slices.Equal(sp.Args, []string{"plugin", "podgc"}) {
		t.Fatalf("args %v; want [plugin podgc]", sp.Args)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Fatalf("nothing to extract, yet the data dir holds %v", entries)
	}
}

func TestBrokenEmbeddedExecutableFailsTheHost(t *testing.T) {
	_, err := resolveBuiltinBinary(t.TempDir(), func() (pluginbin.Archive, bool) {
		return pluginbin.Archive{Gzip: []byte("not gzip"), SHA256: strings.Repeat("ab", 32)}, true
	})
	if err == nil || !strings.Contains(err.Error(), "built-in plugins executable") {
		t.Fatalf("err = %v; want one naming the built-in plugins executable", err)
	}
}

// The spec's environment reaches the plugin process: GOMEMLIMIT and GOGC
// from the configuration change what its Go runtime does.
func TestSpecEnvTunesThePluginRuntime(t *testing.T) {
	withEnv := spec("tuned", "runtime")
	withEnv.Env = []string{"GOMEMLIMIT=134217728", "GOGC=50"}
	s := startSupervisor(t, testConfig(&syncBuffer{}), withEnv, spec("default", "runtime"))
	st := waitFor(t, s, "tuned", func(st PluginStatus) bool { return st.Ready && strings.HasPrefix(st.Message, "memlimit=") })
	if want := "memlimit=134217728 gogc=50"; st.Message != want {
		t.Errorf("tuned plugin reports %q; want %q", st.Message, want)
	}
	st = waitFor(t, s, "default", func(st PluginStatus) bool { return st.Ready && strings.HasPrefix(st.Message, "memlimit=") })
	if want := "memlimit=9223372036854775807 gogc=100"; st.Message != want {
		t.Errorf("untuned plugin reports %q; want Go's defaults %q", st.Message, want)
	}
}

func TestSpecEnvMustBeKeyValue(t *testing.T) {
	sp := spec("bad", "healthy")
	sp.Env = []string{"GOGC"}
	if _, err := New(testConfig(&syncBuffer{}), []Spec{sp}); err == nil || !strings.Contains(err.Error(), `"GOGC" is not KEY=VALUE`) {
		t.Fatalf("New err = %v; want one naming the bad entry", err)
	}
}

// The built-ins the extracted executable lacks, and any group with one of
// them, run from the keelson binary itself.
func TestBuiltinsTheExecutableLacksRunFromKeelson(t *testing.T) {
	bin, err := resolveBuiltinBinary(t.TempDir(), testArchive(t))
	if err != nil {
		t.Fatal(err)
	}
	bin.Lacks = []string{"heavy"}
	self, err := SelfBinary()
	if err != nil {
		t.Fatal(err)
	}
	heavy := bin.Lacks[0]
	sp := BuiltinSpec(bin, heavy, nil)
	if sp.Path != self.Path || !slices.Equal(sp.Args, []string{"plugin", heavy}) || sp.SHA256 != "" || !sp.Builtin {
		t.Errorf("spec of %s: %+v; want `%s plugin %s`, unpinned", heavy, sp, self.Path, heavy)
	}
	if sp := BuiltinSpec(bin, "alpha", nil); sp.Path != bin.Path || sp.SHA256 != bin.SHA256 {
		t.Errorf("spec of alpha: %+v; want the extracted executable %s", sp, bin.Path)
	}
	if g := BuiltinGroupSpec(bin, "g", []string{"alpha", heavy}); g.Path != self.Path || !slices.Equal(g.Args, []string{"plugin", "group", "g", "alpha", heavy}) {
		t.Errorf("group with %s: %+v; want it run by keelson", heavy, g)
	}
	if g := BuiltinGroupSpec(bin, "g", []string{"alpha", "beta"}); g.Path != bin.Path || g.SHA256 != bin.SHA256 {
		t.Errorf("group of alpha and beta: %+v; want the extracted executable", g)
	}
}
