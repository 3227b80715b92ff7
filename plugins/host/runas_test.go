package host

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestThirdPartyPluginRunsUnprivileged: with RunAs, a third-party plugin runs
// as that user and group, with no supplementary groups, from a verified copy
// of its executable (the plugin directory itself may be private to the
// host); a copy that does not match the checksum is refused.
func TestThirdPartyPluginRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change the plugin's user")
	}
	b, err := os.ReadFile(testPlugin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	private := t.TempDir() // 0700, as a data dir is
	if err := os.WriteFile(filepath.Join(private, "tp"), b, 0o700); err != nil {
		t.Fatal(err)
	}
	execRoot, err := os.MkdirTemp("", "keelson-runas-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(execRoot) })
	if err := os.Chmod(execRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("host log:\n%s", logs.String())
		}
	})
	cfg := testConfig(logs)
	cfg.RunAs = &RunAs{UID: 65534, GID: 65534, ExecDir: filepath.Join(execRoot, "exec")}
	sp := ThirdPartySpec("tp", private, "tp", hex.EncodeToString(sum[:]), nil)
	s := startSupervisor(t, cfg, sp)
	st := waitFor(t, s, "tp", func(st PluginStatus) bool { return st.State == StateRunning && st.PID != 0 })
	ids := procIDs(t, st.PID)
	if ids["Uid"] != "65534" || ids["Gid"] != "65534" || ids["Groups"] != "" {
		t.Errorf("plugin process ids = %v, want uid and gid 65534 and no groups", ids)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", st.PID))
	if err != nil || !strings.HasPrefix(exe, cfg.RunAs.ExecDir) {
		t.Errorf("plugin runs %q (%v), want the verified copy under %s", exe, err, cfg.RunAs.ExecDir)
	}
}

// procIDs reads the real uid, gid and groups of pid.
func procIDs(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		switch k {
		case "Uid", "Gid":
			out[k] = fields[0]
		case "Groups":
			out[k] = strings.Join(fields, " ")
		}
	}
	return out
}

// TestCopyVerifiedRefusesAMismatch: the copy that would run is checked, not
// the file as it was before.
func TestCopyVerifiedRefusesAMismatch(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "p")
	if err := os.WriteFile(src, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("v2"))
	err := copyVerified(src, filepath.Join(dir, "copy"), sum[:])
	if err == nil {
		t.Fatal("a mismatching executable was copied")
	}
	if _, serr := os.Stat(filepath.Join(dir, "copy")); serr == nil {
		t.Error("the mismatching copy was left in place")
	}
}
