package teardown

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/internal/pidfile"
)

func TestBridgeOwner(t *testing.T) {
	for alias, want := range map[string]string{
		"keelson:/var/lib/keelson": "/var/lib/keelson",
		"":                         "",
		"docker bridge":            "",
		"keelson":                  "",
	} {
		if got := BridgeOwner(alias); got != want {
			t.Errorf("BridgeOwner(%q) = %q, want %q", alias, got, want)
		}
	}
}

func TestHostRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := LoadHost(dir); ok || err != nil {
		t.Fatalf("no record: ok %v, err %v", ok, err)
	}
	h := Host{Bridge: "keelson0", CgroupRoot: "/keelson", ClusterDNS: []string{"10.43.0.10"}, CNIBinDir: "/usr/lib/cni", ContainerdBin: "containerd", Snapshotter: "overlayfs"}
	if err := h.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadHost(dir)
	if err != nil || !ok || got.Bridge != h.Bridge || !slices.Equal(got.ClusterDNS, h.ClusterDNS) || got.CgroupRoot != h.CgroupRoot {
		t.Fatalf("LoadHost = %+v, %v, %v; saved %+v", got, ok, err, h)
	}
}

// TestClaimBridge: the first agent creates and names the bridge; the same
// data dir adopts it; another data dir is refused with the command that
// removes a killed agent's leftovers, or told that the owner runs; a
// device of that name that is not a bridge is refused.
func TestClaimBridge(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	first, second := t.TempDir(), t.TempDir()
	if err := ClaimBridge("kb0", first, 0); err != nil {
		t.Fatal(err)
	}
	if l, err := netlink.LinkByName("kb0"); err != nil || l.Type() != "bridge" || BridgeOwner(l.Attrs().Alias) != first {
		t.Fatalf("bridge after the claim: %v, %v", l, err)
	}
	if err := ClaimBridge("kb0", first, 0); err != nil {
		t.Errorf("the same data dir again (an agent restarting): %v", err)
	}
	err := ClaimBridge("kb0", second, 0)
	if err == nil || !strings.Contains(err.Error(), "keelson agent --cleanup --all --data-dir "+first) {
		t.Errorf("another data dir while the first agent is gone: %v", err)
	}
	agentDir := filepath.Join(first, "agent")
	os.MkdirAll(agentDir, 0o700)
	if err := pidfile.Write(AgentPIDFile(agentDir), os.Getpid()); err != nil {
		t.Fatal(err)
	}
	err = ClaimBridge("kb0", second, 0)
	if err == nil || !strings.Contains(err.Error(), "running as PID") || !strings.Contains(err.Error(), "--cni-bridge") {
		t.Errorf("another data dir while the first agent runs: %v", err)
	}
	netnstest.Run(t, "ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1")
	if err := ClaimBridge("dummy0", first, 0); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("a veth as the bridge: %v", err)
	}
}

// TestKillAllRemovesOnlyTheAgents: KillAll deletes the agent's bridge with
// the veth on it, its DNS address, its mounts below the agent dir and its
// iptables chains, and leaves another agent's bridge, a device of the
// host's, a mount of the operator's in the data dir and a chain of another
// program alone. Uninstall then removes the data dir only once nothing is
// mounted below it.
func TestKillAllRemovesOnlyTheAgents(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	dataDir := t.TempDir()
	agentDir := filepath.Join(dataDir, "agent")
	h := Host{Bridge: "kb0", ClusterDNS: []string{"10.43.0.10"}}
	if err := h.Save(mkdir(t, agentDir)); err != nil {
		t.Fatal(err)
	}
	if err := ClaimBridge("kb0", dataDir, 0); err != nil {
		t.Fatal(err)
	}
	if err := ClaimBridge("other0", t.TempDir(), 0); err != nil {
		t.Fatal(err)
	}
	netnstest.Run(t, "ip", "link", "add", "vethpod", "type", "veth", "peer", "name", "vethpeer")
	netnstest.Run(t, "ip", "link", "set", "vethpod", "master", "kb0")
	netnstest.Run(t, "ip", "link", "add", "host0", "type", "veth", "peer", "name", "host1")
	netnstest.Run(t, "ip", "link", "set", "lo", "up")
	netnstest.Run(t, "ip", "addr", "add", "10.43.0.10/32", "dev", "lo")
	netnstest.Run(t, "iptables", "-t", "nat", "-N", "KEELSON-SERVICES")
	netnstest.Run(t, "iptables", "-t", "nat", "-A", "PREROUTING", "-m", "comment", "--comment", "keelson-service-portals", "-j", "KEELSON-SERVICES")
	netnstest.Run(t, "iptables", "-t", "nat", "-N", "OTHER-PROGRAM")
	vol := mkdir(t, filepath.Join(agentDir, "pods", "uid1", "volumes", "mem"))
	mount(t, vol)
	operators := mkdir(t, filepath.Join(dataDir, "storage"))
	mount(t, operators)

	r, err := KillAll(context.Background(), Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"kb0", "vethpod", "vethpeer"} {
		if _, err := netlink.LinkByName(gone); err == nil {
			t.Errorf("%s is still there", gone)
		}
	}
	for _, kept := range []string{"other0", "host0"} {
		if _, err := netlink.LinkByName(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
	if out := netnstest.Run(t, "ip", "-o", "addr", "show", "dev", "lo"); strings.Contains(out, "10.43.0.10") {
		t.Errorf("the cluster DNS address is still on lo: %s", out)
	}
	rules := netnstest.Run(t, "iptables-save", "-t", "nat")
	if strings.Contains(rules, "KEELSON") || !strings.Contains(rules, "OTHER-PROGRAM") {
		t.Errorf("nat table after KillAll:\n%s", rules)
	}
	if m, _ := mountsBelow(dataDir); !slices.Equal(m, []string{operators}) {
		t.Errorf("mounts below the data dir: %v, want only the operator's %s (report %+v)", m, operators, r)
	}

	if _, err := Uninstall(context.Background(), Options{DataDir: dataDir}); err == nil || !strings.Contains(err.Error(), operators) {
		t.Errorf("Uninstall with %s mounted: %v", operators, err)
	}
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatalf("the data dir went despite a mount below it: %v", err)
	}
	if err := unix.Unmount(operators, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Uninstall(context.Background(), Options{DataDir: dataDir}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the data dir is still there: %v", err)
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mount puts a small tmpfs on dir, unmounted when the test ends if it is
// still there.
func mount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
}

// TestKillAllWithoutRecordLeavesUnnamedBridge: without the agent's record,
// a bridge of the configured name that no alias ties to the data dir is
// not deleted, and KillAll says why.
func TestKillAllWithoutRecordLeavesUnnamedBridge(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	netnstest.Run(t, "ip", "link", "add", "keelson0", "type", "bridge")
	_, err := KillAll(context.Background(), Options{DataDir: t.TempDir(), Host: Host{Bridge: "keelson0"}})
	if err == nil || !strings.Contains(err.Error(), "left in place") {
		t.Errorf("KillAll: %v", err)
	}
	if _, err := netlink.LinkByName("keelson0"); err != nil {
		t.Errorf("the unnamed bridge was deleted: %v", err)
	}
}
