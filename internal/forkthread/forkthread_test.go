package forkthread

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// retireThreads ends OS threads the way network-namespace work does:
// goroutines that lock their thread and return without unlocking it.
func retireThreads(n int) {
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			time.Sleep(time.Millisecond)
		}()
	}
	wg.Wait()
}

// TestChildrenOutliveRetiredThreads: children started here with a
// parent-death signal keep running while the process retires threads.
func TestChildrenOutliveRetiredThreads(t *testing.T) {
	var cmds []*exec.Cmd
	for range 3 {
		cmd := exec.Command("sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := Start(cmd); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		// Threads retire between the starts too.
		retireThreads(20)
	}
	for range 20 {
		retireThreads(50)
	}
	// A retired thread's signal is sent as it exits, just after its
	// goroutine is done: look a few times.
	for range 10 {
		for _, cmd := range cmds {
			if !running(cmd.Process.Pid) {
				t.Fatalf("child %d died when other threads of its parent were retired", cmd.Process.Pid)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStartReportsTheError(t *testing.T) {
	err := Start(exec.Command("/nonexistent/forkthread-test"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/forkthread-test") {
		t.Fatalf("Start of a missing binary: %v", err)
	}
}

// niceOf returns the nice value in a /proc/PID/stat line.
func niceOf(t *testing.T, stat []byte) int {
	t.Helper()
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	var n int
	if _, err := fmt.Sscan(fields[16], &n); err != nil {
		t.Fatalf("nice in %q: %v", stat, err)
	}
	return n
}

// TestStartNice: a child started with StartNice runs that many steps
// nicer than this process, a child of Start at its priority (its threads'
// inheritance: plugins/host TestPluginsRunBelowTheHost).
func TestStartNice(t *testing.T) {
	self, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	base := niceOf(t, self)
	if base+5 > 19 {
		t.Skipf("this process already runs at nice %d", base)
	}
	for _, nice := range []int{5, 0, 5} {
		cmd := exec.Command("cat", "/proc/self/stat")
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := StartNice(cmd, nice); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		if got := niceOf(t, out.Bytes()); got != base+nice {
			t.Errorf("StartNice(cmd, %d): child runs at nice %d, want %d", nice, got, base+nice)
		}
	}
}

// mainThreadLoop serves a fork loop of nice 3 that TestMain started on
// the main thread.
var mainThreadLoop chan request

// init keeps the main goroutine on the main thread (a LockOSThread in an
// init function lasts into main), so TestMain runs there.
func init() { runtime.LockOSThread() }

// TestMain starts a fork loop on the main thread, as any goroutine may
// find itself there, and fails the run if that lowered the main thread's
// priority, which ps, top and /proc/PID/stat show as the process's.
func TestMain(m *testing.M) {
	base, err := mainThreadNice()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	reqs, ready := make(chan request), make(chan struct{})
	go func() {
		<-ready
		if got, err := mainThreadNice(); err != nil || got != base {
			fmt.Fprintf(os.Stderr, "a fork loop started on the main thread left it at nice %d (%v), want the process's %d\n", got, err, base)
			os.Exit(1)
		}
	}()
	loop(reqs, 3, ready)
	mainThreadLoop = reqs
	os.Exit(m.Run())
}

func mainThreadNice() (int, error) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return strconv.Atoi(fields[16])
}

// TestLoopMovedOffTheMainThreadServes: the loop TestMain started on the
// main thread still starts children, at its nice.
func TestLoopMovedOffTheMainThreadServes(t *testing.T) {
	base, err := mainThreadNice()
	if err != nil {
		t.Fatal(err)
	}
	if base+3 > 19 {
		t.Skipf("this process already runs at nice %d", base)
	}
	cmd := exec.Command("cat", "/proc/self/stat")
	var out bytes.Buffer
	cmd.Stdout = &out
	r := request{cmd: cmd, done: make(chan error, 1)}
	mainThreadLoop <- r
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := niceOf(t, out.Bytes()); got != base+3 {
		t.Errorf("child of the moved loop runs at nice %d, want %d", got, base+3)
	}
}
