package upgrade

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BaseCommit is the previous release the upgrade starts from: the last
// commit of the seventh session (store feature level 2). It moved from
// fe9eef58, whose announcer answered ARP for other nodes' own addresses
// once a LoadBalancer Service carried them (fixed in 5f9ea69): in a mixed
// cluster its agents cut a node off for up to half a minute. Move it
// forward at each release; KEELSON_UPGRADE_FROM (any git revision)
// overrides it.
const BaseCommit = "65ed5bf49987e91be7b4e69ae2d8307ed2a33fde"

// BaseFromEnv overrides BaseCommit.
const BaseFromEnv = "KEELSON_UPGRADE_FROM"

// Base is the previous release's binary and what the test needs to know
// about it.
type Base struct {
	Commit string
	// Bin is its keelson binary; Version the keelson version stamped in it.
	Bin, Version string
	// FeatureLevel is its build's store feature level (fsm.FeatureLevel at
	// that commit; 0 when it predates levels).
	FeatureLevel int
}

// BuildBase returns the previous release's binary, building it on first
// use into cacheDir()/<commit>/ with that commit's Makefile (its ldflags,
// its embedded plugins), under a file lock so two test binaries never
// build it twice.
func BuildBase(t testing.TB) Base {
	t.Helper()
	root := strings.TrimSpace(mustGit(t, "", "rev-parse", "--show-toplevel"))
	rev := BaseCommit
	if v := os.Getenv(BaseFromEnv); v != "" {
		rev = v
	}
	out, err := git(root, "rev-parse", "--verify", rev+"^{commit}")
	if err != nil {
		t.Fatalf("the previous release %s is not in this clone's history (a shallow clone? `git fetch --unshallow`): %v", rev, err)
	}
	commit := strings.TrimSpace(out)
	b := Base{Commit: commit, Version: "0.1.0-base." + commit[:8]}
	b.FeatureLevel = featureLevelAt(t, root, commit)
	dir := filepath.Join(cacheDir(t), commit)
	b.Bin = filepath.Join(dir, "keelson")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, filepath.Join(dir, "lock"))
	defer unlock()
	if _, err := os.Stat(b.Bin); err == nil {
		t.Logf("previous release %s: cached %s", commit[:12], b.Bin)
		return b
	}
	start := time.Now()
	if err := buildAt(root, commit, dir, b.Version); err != nil {
		t.Fatalf("building the previous release %s (%s): %v", commit[:12], rev, err)
	}
	t.Logf("previous release %s: built %s in %s (cached for later runs)", commit[:12], b.Bin, time.Since(start).Round(time.Second))
	return b
}

// CacheEnv names the directory previous releases are built into.
const CacheEnv = "KEELSON_UPGRADE_CACHE"

// cacheDir is CacheEnv, or keelson-upgrade beside Go's build cache (the
// user cache dir, ~/.cache): outside the clone, so CI, which tests a clean
// clone each time, builds a given previous release once per machine.
func cacheDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(CacheEnv); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory for the previous release's binary (set %s): %v", CacheEnv, err)
	}
	return filepath.Join(d, "keelson-upgrade")
}

// buildAt extracts commit into a scratch directory under dir, runs its
// `make build` stamped with version, and moves the binary into place.
func buildAt(root, commit, dir, version string) error {
	src, err := os.MkdirTemp(dir, "src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return fmt.Errorf("git archive: %w: %s", err, out)
	}
	mk := exec.Command("make", "-C", src, "build", "KEELSON_VERSION="+version, "GIT_COMMIT="+commit)
	var log bytes.Buffer
	mk.Stdout, mk.Stderr = &log, &log
	if err := mk.Run(); err != nil {
		return fmt.Errorf("make build: %w: %s", err, tail(log.String(), 3000))
	}
	tmp := filepath.Join(dir, "keelson.tmp")
	if out, err := exec.Command("cp", filepath.Join(src, "bin", "keelson"), tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("copying the binary: %w: %s", err, out)
	}
	return os.Rename(tmp, filepath.Join(dir, "keelson"))
}

var featureLevelRE = regexp.MustCompile(`(?m)^const FeatureLevel = (\d+)`)

// featureLevelAt reads fsm.FeatureLevel from commit's source.
func featureLevelAt(t testing.TB, root, commit string) int {
	t.Helper()
	src, err := git(root, "show", commit+":fsm/features.go")
	if err != nil {
		return 0 // a version before feature levels
	}
	m := featureLevelRE.FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("fsm/features.go at %s declares no `const FeatureLevel = N`", commit[:12])
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func lockFile(t testing.TB, path string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("locking %s: %v", path, err)
	}
	return func() { f.Close() }
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func mustGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := git(dir, args...)
	if err != nil {
		t.Skipf("the upgrade test builds the previous release from git: %v", err)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
