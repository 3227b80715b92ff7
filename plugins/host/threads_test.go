package host

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// retireThreads makes Go retire OS threads the way the agent's network
// namespace work does: goroutines that lock their thread and end without
// unlocking it, so the runtime terminates the thread.
func retireThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			// Keep the thread busy briefly so idle ones get picked too.
			time.Sleep(time.Millisecond)
		}()
	}
	wg.Wait()
}

// TestPluginsSurviveRetiredThreads: a plugin's parent-death signal must not
// fire when some OS thread of the host ends; only the host's death may end
// it. Before plugins were forked from one thread that never ends, a busy
// host's netns work killed them (issue 15, item 13).
func TestPluginsSurviveRetiredThreads(t *testing.T) {
	s := startSupervisor(t, testConfig(&syncBuffer{}), spec("a", "healthy"), spec("b", "healthy"), spec("c", "healthy"))
	pids := map[string]int{}
	for _, name := range []string{"a", "b", "c"} {
		pids[name] = waitFor(t, s, name, func(st PluginStatus) bool { return st.State == StateRunning && st.Ready }).PID
	}
	// Many rounds: the scheduler hands the retiring goroutines whichever
	// idle threads it has, so over the rounds every idle thread, including
	// any that forked a plugin, is retired.
	for range 20 {
		retireThreads(50)
	}
	// A killed plugin is noticed by the host's ping within a second.
	time.Sleep(2 * time.Second)
	for _, st := range s.Status() {
		if st.Restarts != 0 || st.PID != pids[st.Name] || st.State != StateRunning {
			t.Errorf("plugin %s: %d restarts, pid %d (was %d), state %s, last error %q",
				st.Name, st.Restarts, st.PID, pids[st.Name], st.State, st.LastError)
		}
	}
}

// niceOfStat returns the nice value of a /proc/.../stat line.
func niceOfStat(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	n, err := strconv.Atoi(fields[16])
	if err != nil {
		t.Fatalf("nice in %s: %v", path, err)
	}
	return n
}

// TestPluginsRunBelowTheHost: every thread of a plugin process runs
// pluginNice steps nicer than the host, so a busy machine serves the
// server's raft and API first.
func TestPluginsRunBelowTheHost(t *testing.T) {
	base := niceOfStat(t, "/proc/self/stat")
	if base+pluginNice > 19 {
		t.Skipf("the test already runs at nice %d", base)
	}
	s := startSupervisor(t, testConfig(&syncBuffer{}), spec("a", "healthy"))
	pid := waitFor(t, s, "a", func(st PluginStatus) bool { return st.State == StateRunning && st.Ready }).PID
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(tasks) < 2 {
		t.Fatalf("threads of plugin pid %d: %v (%d found, a Go process has several)", pid, err, len(tasks))
	}
	for _, task := range tasks {
		if got := niceOfStat(t, task); got != base+pluginNice {
			t.Errorf("%s: nice %d, want %d (the host's %d + %d)", task, got, base+pluginNice, base, pluginNice)
		}
	}
}
