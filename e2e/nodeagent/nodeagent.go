// Package nodeagent runs real `keelson agent` processes for end-to-end
// tests, on the host or inside a network namespace, and removes what an
// agent leaves behind when it is killed: the containerd shims (they outlive
// containerd by design, and with them the pods' processes), the mounts
// under its data dir (pod network namespaces, volumes, root filesystems),
// its pod bridge and its cgroup tree. The processes themselves are
// started and stopped by internal/testproc.
package nodeagent

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/testimage"
	"github.com/keelson/keelson/internal/testnet"
	"github.com/keelson/keelson/internal/testproc"
)

// BusyboxImage is the reference under which New imports the test busybox
// image (internal/testimage) into every agent from its images directory,
// so pods run without any registry.
const BusyboxImage = "keelson.test/busybox:e2e"

// Require skips the test unless this machine can run pods: root,
// containerd, runc, the shim, iptables, the CNI bridge plugin and the
// static busybox the test image is made of.
func Require(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run pods")
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2", "iptables", "nsenter"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed", bin)
		}
	}
	for _, f := range []string{"/usr/lib/cni/bridge", testimage.BusyboxPath} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s is not installed", f)
		}
	}
}

// ProxyModeEnv selects the service proxy mode of every agent the tests
// start (--proxy-mode), so that CI runs the service tests in both:
// KEELSON_PROXY_MODE=iptables. Unset, agents use their default (nftables
// where the kernel supports it).
const ProxyModeEnv = "KEELSON_PROXY_MODE"

// ProxyModeArgs are the agent flags ProxyModeEnv asks for.
func ProxyModeArgs() []string {
	if m := os.Getenv(ProxyModeEnv); m != "" {
		return []string{"--proxy-mode", m}
	}
	return nil
}

// Options describe one agent.
type Options struct {
	// Name is the node name (--node-name).
	Name string
	// NetNS, when set, is the network namespace (as `ip netns` names it)
	// the agent runs in; it shares the host's mount and cgroup namespaces,
	// so its mounts and cgroups are visible to the cleanup.
	NetNS string
	// Args are further `keelson agent` flags: --server, --token, addresses.
	// --data-dir, --node-name, --cni-bridge and --cgroup-root are set here.
	Args []string
	// Bin is the keelson binary (default: the binary under test).
	Bin string
}

// Agent is one node agent whose data dir outlives its processes, so it can
// be killed and started again.
type Agent struct {
	Name string
	// DataDir is under /tmp: containerd's socket path must stay short.
	DataDir string
	// Bridge is the pod bridge, CgroupRoot the parent of the pods' cgroups;
	// both unique to this agent.
	Bridge     string
	CgroupRoot string

	bin  string
	opts Options

	mu      sync.Mutex
	runs    int
	logPath string
	proc    *testproc.Process
}

// New prepares an agent with a fresh data dir holding the busybox image
// tarball, without starting it. Everything it leaves is removed when the
// test ends: register it after whatever must outlive it (its network
// namespace) and before what it needs gone first (its API server).
func New(t testing.TB, opts Options) *Agent {
	t.Helper()
	Require(t)
	dir, err := os.MkdirTemp("", "ka")
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{
		Name:       opts.Name,
		DataDir:    dir,
		Bridge:     testnet.BridgeName(),
		CgroupRoot: "/keelson-e2e-" + opts.Name + "-" + randomHex(3),
		bin:        opts.Bin,
		opts:       opts,
	}
	if a.bin == "" {
		a.bin = harness.KeelsonBin(t)
	}
	t.Cleanup(func() { a.cleanup(t) })
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "images"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testimage.WriteTarball(filepath.Join(dir, "images", "busybox.tar"), BusyboxImage, img); err != nil {
		t.Fatal(err)
	}
	return a
}

// LogPath is the log of the current (or last) process.
func (a *Agent) LogPath() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logPath
}

// Start runs a new agent process on the data dir. It does not wait for the
// node: callers watch the Node object.
func (a *Agent) Start(t testing.TB) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		t.Fatalf("agent %s already running (pid %d)", a.Name, a.proc.PID())
	}
	a.runs++
	a.logPath = filepath.Join(a.DataDir, fmt.Sprintf("agent-%d.log", a.runs))
	// In a namespace, nsenter switches the network namespace only: `ip
	// netns exec` would also give the agent a mount namespace without
	// /sys/fs/cgroup. The kernel kills the agent (and so its containerd)
	// if the test binary dies without running its cleanups.
	p, err := testproc.Start(testproc.Spec{
		Name: "agent " + a.Name, Bin: a.bin, NetNS: a.opts.NetNS, LogPath: a.logPath,
		Args: append(append([]string{"agent",
			"--data-dir", a.DataDir,
			"--node-name", a.Name,
			"--cni-bridge", a.Bridge,
			"--cgroup-root", a.CgroupRoot,
		}, ProxyModeArgs()...), a.opts.Args...),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("agent %s: started pid %d (run %d), log %s", a.Name, p.PID(), a.runs, a.logPath)
	a.proc = p
}

// SetBin makes the next Start run bin (a rolling upgrade: Stop, SetBin,
// Start on the same data dir).
func (a *Agent) SetBin(bin string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bin = bin
}

// Running reports whether the agent process is alive.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.proc != nil && a.proc.Running()
}

// Kill is a crash: SIGKILL to the agent, whose containerd dies with it
// (parent-death signal); the pods' shims and processes stay, as on a node
// whose agent crashed.
func (a *Agent) Kill() {
	if p := a.take(); p != nil {
		p.Kill()
	}
}

// Stop ends the agent with SIGTERM, SIGKILL after a minute.
func (a *Agent) Stop() {
	if p := a.take(); p != nil {
		_ = p.Stop(time.Minute)
	}
}

// take returns the running process, if any, and forgets it.
func (a *Agent) take() *testproc.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.proc
	a.proc = nil
	return p
}

// cleanup kills the agent and everything it left running, then removes its
// mounts, bridge, cgroups and data dir. Pods are not deleted through the
// API: the cluster is going away too.
func (a *Agent) cleanup(t testing.TB) {
	if t.Failed() && a.LogPath() != "" {
		t.Logf("---- agent %s: tail of %s ----\n%s", a.Name, a.LogPath(), testproc.Tail(a.LogPath(), 80))
	}
	a.Kill()
	harness.RemovePluginRunDirs(t, a.DataDir)
	KillShims(t, filepath.Join(a.DataDir, "agent", "containerd", "containerd.sock"))
	UnmountUnder(t, a.DataDir)
	if a.opts.NetNS == "" { // in a namespace, the bridge goes with it
		if err := testnet.DeleteLink(a.Bridge); err != nil {
			t.Error(err)
		}
	}
	// RemoveCgroupTree kills the pods' processes; they leave their cgroups
	// a moment later.
	for deadline := time.Now().Add(10 * time.Second); testproc.RemoveCgroupTree(a.CgroupRoot) && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	os.RemoveAll(a.DataDir)
}

// Shims returns the PIDs of the containerd shims of the agent's containerd,
// one per container it runs (including those a killed agent left).
func (a *Agent) Shims() []int {
	return shims(filepath.Join(a.DataDir, "agent", "containerd", "containerd.sock"))
}

// Containerd returns the PIDs of the containerd daemons the agent started
// (one while it runs, none once it is gone).
func (a *Agent) Containerd() []int {
	dir := []byte(filepath.Join(a.DataDir, "agent", "containerd") + "/")
	return processes(func(argv [][]byte) bool {
		return filepath.Base(string(argv[0])) == "containerd" && slices.ContainsFunc(argv, func(arg []byte) bool { return bytes.HasPrefix(arg, dir) })
	})
}

// shims finds the containerd shims started by the containerd listening on
// socket by the socket on their command line.
func shims(socket string) []int {
	return processes(func(argv [][]byte) bool {
		return slices.ContainsFunc(argv, func(arg []byte) bool { return string(arg) == socket })
	})
}

// processes returns the PIDs of the processes whose command line matches.
func processes(match func(argv [][]byte) bool) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 || !match(bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillShims kills the containerd shims started by the containerd listening
// on socket: once the agent's containerd is gone, nothing else would. The
// containers' processes outlive their shim; RemoveCgroupTree kills them.
func KillShims(t testing.TB, socket string) {
	for _, pid := range shims(socket) {
		t.Logf("killing leftover shim %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// UnmountUnder unmounts everything mounted below dir, deepest first.
func UnmountUnder(t testing.TB, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", points[i], err)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
