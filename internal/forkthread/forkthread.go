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

// request is one Start to run on the fork thread.
type request struct {
	cmd  *exec.Cmd
	done chan error
}

// The fork thread is process-wide state by nature: a parent-death signal is
// bound to one thread, and one thread serves every caller.
var (
	once     sync.Once
	requests chan request
)

// Start starts cmd (cmd.Start) on the fork thread and returns its error.
// Waiting for the child (cmd.Wait) may happen on any goroutine.
func Start(cmd *exec.Cmd) error {
	once.Do(func() {
		requests = make(chan request)
		ready := make(chan struct{})
		go loop(ready)
		<-ready
	})
	r := request{cmd: cmd, done: make(chan error, 1)}
	requests <- r
	return <-r.done
}

// loop locks its thread and runs every Start on it, forever: returning
// would end the thread and, with it, the parent-death signal's parent.
func loop(ready chan<- struct{}) {
	runtime.LockOSThread()
	close(ready)
	for r := range requests {
		r.done <- r.cmd.Start()
	}
}
