// Package netnstest runs a test inside a network namespace of its own, so
// that it can change iptables rules, routes and links without touching the
// machine's: the test binary re-executes itself under `unshare --net` for
// that one test, and everything it made disappears with the namespace when
// the child exits.
package netnstest

import (
	"os"
	"os/exec"
	"testing"
)

const childEnv = "KEELSON_NETNS_TEST_CHILD"

// Isolate returns true in the child, where the test body must run. In the
// parent it runs the child, reports its result and returns false; the
// caller returns at once. It skips the test without root or unshare.
//
//	func TestRules(t *testing.T) {
//		if !netnstest.Isolate(t) {
//			return
//		}
//		... // runs in a fresh network namespace
//	}
func Isolate(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace (CI runs as root)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare (util-linux): " + err.Error())
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables (scripts/install-deps.sh installs it): " + err.Error())
	}
	args := []string{"--net", os.Args[0], "-test.run=^" + t.Name() + "$", "-test.v", "-test.count=1"}
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its network namespace: %v", err)
	}
	return false
}

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}
