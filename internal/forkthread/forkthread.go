// Package forkthread starts long-lived child processes from one OS thread
// that is locked for the life of the process and never exits.
//
// Linux sends a child's parent-death signal (PR_SET_PDEATHSIG, Go's
// SysProcAttr.Pdeathsig) when the *thread* that forked it exits, not the
// process. Go exits a thread whenever a goroutine that locked it
// (runtime.LockOSThread, as network-namespace and CNI work does) returns
// without unlocking, and any idle thread may be the one that forked a child.
// Forking from a thread that nothing else can run on and that never ends
// leaves the signal to fire only when the whole process dies.
package forkthread

import (
	"os/exec"
	"runtime"
	"sync"
)

// request is one Start to run on a fork thread.
type request struct {
	cmd  *exec.Cmd
	done chan error
}

// The fork threads are process-wide state by nature: a parent-death signal
// is bound to one thread. One thread serves every caller of a niceness.
var (
	mu      sync.Mutex
	threads = map[int]chan request{}
)

// Start starts cmd (cmd.Start) on the fork thread and returns its error.
// Waiting for the child (cmd.Wait) may happen on any goroutine.
func Start(cmd *exec.Cmd) error { return StartNice(cmd, 0) }

// StartNice is Start for a child that runs nice steps below this process
// (a higher nice value, so a smaller share of a busy CPU; 0 is this
// process's own): it is forked from a thread of its own that lowered its
// priority once, and a child and all its threads inherit the priority of
// the thread that forked it. Raising a thread's nice value needs no
// privilege; were it refused, the child runs at this process's priority.
func StartNice(cmd *exec.Cmd, nice int) error {
	mu.Lock()
	reqs, ok := threads[nice]
	if !ok {
		reqs = make(chan request)
		ready := make(chan struct{})
		go loop(reqs, nice, ready)
		<-ready
		threads[nice] = reqs
	}
	mu.Unlock()
	r := request{cmd: cmd, done: make(chan error, 1)}
	reqs <- r
	return <-r.done
}

// loop locks its thread, lowers its priority by nice, and runs every Start
// sent to it on that thread, forever: returning would end the thread and,
// with it, the parent-death signal's parent.
//
// A thread that lowers its priority must not be the main thread: ps, top
// and /proc/PID/stat show the main thread's priority as the process's, so
// the whole server would look reniced. On the main thread, loop hands its
// work to a loop on another thread (which cannot start on the main thread
// while this goroutine holds it) and then lets the main thread go.
func loop(reqs <-chan request, nice int, ready chan<- struct{}) {
	runtime.LockOSThread()
	if nice > 0 && onMainThread() {
		moved := make(chan struct{})
		go loop(reqs, nice, moved)
		<-moved
		runtime.UnlockOSThread()
		close(ready)
		return
	}
	if nice > 0 {
		lowerThreadPriority(nice)
	}
	close(ready)
	for r := range reqs {
		r.done <- r.cmd.Start()
	}
}
