package forkthread

import "golang.org/x/sys/unix"

// lowerThreadPriority raises the calling thread's nice value by n:
// PRIO_PROCESS with a thread ID sets that one thread on Linux.
func lowerThreadPriority(n int) {
	tid := unix.Gettid()
	cur, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return
	}
	// The raw getpriority system call returns 20 - nice.
	_ = unix.Setpriority(unix.PRIO_PROCESS, tid, 20-cur+n)
}

// onMainThread reports whether the calling thread is the process's main
// thread (its thread ID is the process ID).
func onMainThread() bool { return unix.Gettid() == unix.Getpid() }
