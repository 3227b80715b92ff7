package runtime

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
)

// startRuntime runs a private containerd for the test, as the agent does,
// and connects to it. It skips without root or containerd.
func startRuntime(t *testing.T, registries map[string]config.Registry) *Runtime {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to run containers")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("containerd is not installed")
	}
	dir, err := os.MkdirTemp("", "krt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := StartDaemon(ctx, DaemonOptions{Bin: "containerd", Dir: filepath.Join(dir, "containerd"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	rt, err := New(ctx, Options{Socket: d.Socket(), Dir: filepath.Join(dir, "rt"), Snapshotter: "overlayfs", Registries: registries, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// testCgroup is a cgroup path of the test's own, removed at its end.
func testCgroup(t *testing.T, id string) string {
	parent := "/keelson-rt-test-" + id[:8]
	t.Cleanup(func() {
		roots, _ := filepath.Glob("/sys/fs/cgroup/*")
		for _, r := range append(roots, "/sys/fs/cgroup") {
			os.Remove(filepath.Join(r, parent, id))
			os.Remove(filepath.Join(r, parent))
		}
	})
	return parent + "/" + id
}

// syncBuffer is a bytes.Buffer safe for the copier goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitState(t *testing.T, rt *Runtime, id string, want State) Container {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := rt.Inspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s is %s, want %s", id, c.State, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestContainerLifecycle(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	const ref = "docker.io/library/busybox:test"
	importImage(t, rt, ref, nil)
	if ok, err := rt.HasImage(ctx, ref); err != nil || !ok {
		t.Fatalf("imported image not present: %v %v", ok, err)
	}

	id := NewID()
	err := rt.Create(ctx, id, ContainerSpec{
		Image:       ref,
		Labels:      map[string]string{"test": "lifecycle"},
		Command:     []string{"sh", "-c"},
		Args:        []string{`echo out; echo err >&2; hostname; echo "$GREETING"; exit 3`},
		Env:         []string{"GREETING=hello"},
		Hostname:    "box",
		CgroupsPath: testCgroup(t, id),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Remove(ctx, id) })
	var stdout, stderr syncBuffer
	if err := rt.Start(ctx, id, IO{Stdout: &stdout, Stderr: &stderr}); err != nil {
		t.Fatal(err)
	}
	waitState(t, rt, id, StateExited)
	if err := rt.Reap(ctx, id); err != nil {
		t.Fatal(err)
	}
	c := waitState(t, rt, id, StateExited)
	if c.ExitCode != 3 || c.StartedAt.IsZero() || c.FinishedAt.Before(c.StartedAt) {
		t.Errorf("exit record %+v", c)
	}
	if got, want := stdout.String(), "out\nbox\nhello\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got := stderr.String(); got != "err\n" {
		t.Errorf("stderr %q", got)
	}
	if !strings.HasPrefix(c.ImageRef, "docker.io/library/busybox@sha256:") {
		t.Errorf("image ref %q", c.ImageRef)
	}
	list, err := rt.List(ctx, map[string]string{"test": "lifecycle"})
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("list by label: %v %v", list, err)
	}
	if err := rt.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if list, _ := rt.List(ctx, map[string]string{"test": "lifecycle"}); len(list) != 0 {
		t.Fatalf("removed container still listed: %v", list)
	}
}

func TestExecAndSignal(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	const ref = "docker.io/library/busybox:test"
	importImage(t, rt, ref, nil)
	id := NewID()
	if err := rt.Create(ctx, id, ContainerSpec{Image: ref, Command: []string{"sleep", "600"}, CgroupsPath: testCgroup(t, id)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Remove(ctx, id) })
	if err := rt.Start(ctx, id, IO{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	waitState(t, rt, id, StateRunning)

	var out syncBuffer
	err := rt.Exec(ctx, id, ExecOptions{Cmd: []string{"sh", "-c", "cat; exit 7"}, Stdin: strings.NewReader("piped\n"), Stdout: &out})
	if code, ok := IsExitError(err); !ok || code != 7 {
		t.Fatalf("exec exit: %v", err)
	}
	if out.String() != "piped\n" {
		t.Errorf("exec output %q", out.String())
	}

	if err := rt.Signal(ctx, id, 9); err != nil {
		t.Fatal(err)
	}
	c := waitState(t, rt, id, StateExited)
	if c.ExitCode != 137 {
		t.Errorf("killed container exit code %d, want 137", c.ExitCode)
	}
}

// TestJoinPIDNamespace: a container given another's PID namespace (an
// ephemeral container with a target) sees that container's processes; one
// without sees only its own.
func TestJoinPIDNamespace(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	const ref = "docker.io/library/busybox:test"
	importImage(t, rt, ref, nil)
	target := NewID()
	if err := rt.Create(ctx, target, ContainerSpec{Image: ref, Command: []string{"sleep", "600"}, CgroupsPath: testCgroup(t, target)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Remove(ctx, target) })
	if err := rt.Start(ctx, target, IO{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Signal(ctx, target, 9) })
	tc := waitState(t, rt, target, StateRunning)
	for _, tc := range []struct {
		name, pidns string
		seesTarget  bool
	}{
		{"joined", "/proc/" + strconv.Itoa(int(tc.Pid)) + "/ns/pid", true},
		{"own", "", false},
	} {
		id := NewID()
		if err := rt.Create(ctx, id, ContainerSpec{Image: ref, Command: []string{"ps", "-o", "args"}, PIDNS: tc.pidns, CgroupsPath: testCgroup(t, id)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Remove(ctx, id) })
		var out syncBuffer
		if err := rt.Start(ctx, id, IO{Stdout: &out, Stderr: &out}); err != nil {
			t.Fatal(err)
		}
		waitState(t, rt, id, StateExited)
		if err := rt.Reap(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(out.String(), "sleep 600"); got != tc.seesTarget {
			t.Errorf("%s PID namespace: ps shows the target's sleep: %v, want %v; ps:\n%s", tc.name, got, tc.seesTarget, out.String())
		}
	}
}

// cgroupFiles reads, inside a running container, its CPU weight or
// shares, CPU quota and memory limit, as the upstream resize specs do.
func cgroupFiles(t *testing.T, rt *Runtime, id string) (shares, quota, memory string) {
	t.Helper()
	read := func(path string) string {
		var out syncBuffer
		if err := rt.Exec(context.Background(), id, ExecOptions{Cmd: []string{"head", "-n", "1", path}, Stdout: &out, Stderr: &out}); err != nil {
			var ls syncBuffer
			_ = rt.Exec(context.Background(), id, ExecOptions{Cmd: []string{"sh", "-c", "ls -la /sys/fs/cgroup /sys/fs/cgroup/*; cat /proc/self/mountinfo | grep cgroup"}, Stdout: &ls, Stderr: &ls})
			t.Fatalf("reading %s in the container: %v: %s\n%s", path, err, out.String(), ls.String())
		}
		return strings.TrimSpace(out.String())
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return read("/sys/fs/cgroup/cpu.weight"), read("/sys/fs/cgroup/cpu.max"), read("/sys/fs/cgroup/memory.max")
	}
	return read("/sys/fs/cgroup/cpu/cpu.shares"), read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), read("/sys/fs/cgroup/memory/memory.limit_in_bytes")
}

// TestUpdateResources: a running container's CPU shares, CPU quota and
// memory limit change in place, a limit it had none of is added, and the
// labels are recorded; the process keeps running.
func TestUpdateResources(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	const ref = "docker.io/library/busybox:test"
	importImage(t, rt, ref, nil)
	id := NewID()
	spec := ContainerSpec{Image: ref, Command: []string{"sleep", "600"}, CgroupsPath: testCgroup(t, id),
		Resources: Resources{CPUShares: 512, MemoryLimit: 64 << 20}}
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Remove(ctx, id) })
	if err := rt.Start(ctx, id, IO{Stdout: io.Discard, Stderr: io.Discard}); err != nil {
		t.Fatal(err)
	}
	before := waitState(t, rt, id, StateRunning)
	v2 := false
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		v2 = true
	}
	shares, quota, memory := cgroupFiles(t, rt, id)
	wantQuota, wantShares := "-1", "512"
	if v2 {
		// runc's mapping of shares to cpu.weight.
		wantQuota, wantShares = "max 100000", strconv.Itoa(1+((512-2)*9999)/262142)
	}
	if shares != wantShares || quota != wantQuota || memory != strconv.Itoa(64<<20) {
		t.Fatalf("created with shares %s quota %q memory %s, want %s %q %d", shares, quota, memory, wantShares, wantQuota, 64<<20)
	}

	res := Resources{CPUShares: 1024, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 96 << 20}
	if err := rt.UpdateResources(ctx, id, res, map[string]string{"resized": "yes"}); err != nil {
		t.Fatal(err)
	}
	shares, quota, memory = cgroupFiles(t, rt, id)
	wantQuota, wantShares = "50000", "1024"
	if v2 {
		wantQuota, wantShares = "50000 100000", strconv.Itoa(1+((1024-2)*9999)/262142)
	}
	if shares != wantShares || quota != wantQuota || memory != strconv.Itoa(96<<20) {
		t.Errorf("updated to shares %s quota %q memory %s, want %s %q %d", shares, quota, memory, wantShares, wantQuota, 96<<20)
	}
	after := waitState(t, rt, id, StateRunning)
	if after.Pid != before.Pid || after.Labels["resized"] != "yes" {
		t.Errorf("after the update: pid %d (was %d), labels %v", after.Pid, before.Pid, after.Labels)
	}
	if err := rt.UpdateResources(ctx, NewID(), res, nil); !IsNotFound(err) {
		t.Errorf("updating a container that does not exist: %v, want not found", err)
	}
}

// TestGuaranteedOOMScoreAdjStarts: a container asked for kubelet's
// Guaranteed oom_score_adj (-997) starts even where the agent may not go
// below its own score (no CAP_SYS_RESOURCE), at the lowest score it may give.
func TestGuaranteedOOMScoreAdjStarts(t *testing.T) {
	rt := startRuntime(t, nil)
	ctx := context.Background()
	const ref = "docker.io/library/busybox:test"
	importImage(t, rt, ref, nil)
	id := NewID()
	spec := ContainerSpec{Image: ref, Command: []string{"sh", "-c", "cat /proc/self/oom_score_adj"}, CgroupsPath: testCgroup(t, id), OOMScoreAdj: ptr(-997)}
	if err := rt.Create(ctx, id, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Remove(ctx, id) })
	var out syncBuffer
	if err := rt.Start(ctx, id, IO{Stdout: &out, Stderr: &out}); err != nil {
		t.Fatal(err)
	}
	c := waitState(t, rt, id, StateExited)
	want := strconv.Itoa(max(-997, oomScoreAdjFloor()))
	if c.ExitCode != 0 || strings.TrimSpace(out.String()) != want {
		t.Errorf("exit %d, oom_score_adj %q, want %s", c.ExitCode, out.String(), want)
	}
}
