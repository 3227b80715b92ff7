// Package netnstest runs a test inside a network namespace of its own, so
// that it can change iptables rules, routes and links without touching the
// machine's: the test binary re-executes itself under `unshare --net` for
// that one test, and everything it made disappears with the namespace when
// the child exits.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"slices"
	"strings"
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

// Attach creates a network namespace named prefix-role-<random> joined to
// this one by a veth pair: hostIP on this side, nsIP as the namespace's
// eth0, a default route there via hostIP. IPv4 addresses get a /24, IPv6
// ones a /64 without duplicate address detection (so they are usable at
// once). It returns the namespace's name, deleted when the test ends.
func Attach(t testing.TB, prefix, role, hostIP, nsIP string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	ns, here := prefix+"-"+role+"-"+hex.EncodeToString(b), prefix+role+hex.EncodeToString(b)
	ip := []string{}
	bits, dad := "/24", []string{}
	if strings.Contains(hostIP, ":") {
		ip, bits, dad = []string{"-6"}, "/64", []string{"nodad"}
	}
	Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	Run(t, "ip", "link", "add", here, "type", "veth", "peer", "name", "eth0", "netns", ns)
	Run(t, "ip", slices.Concat(ip, []string{"addr", "add", hostIP + bits, "dev", here}, dad)...)
	Run(t, "ip", "link", "set", here, "up")
	for _, args := range [][]string{
		slices.Concat(ip, []string{"addr", "add", nsIP + bits, "dev", "eth0"}, dad), {"link", "set", "eth0", "up"}, {"link", "set", "lo", "up"},
		slices.Concat(ip, []string{"route", "add", "default", "via", hostIP}),
	} {
		Run(t, "ip", append([]string{"-n", ns}, args...)...)
	}
	return ns
}
