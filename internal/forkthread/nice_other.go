//go:build !linux

package forkthread

// lowerThreadPriority is Linux only: elsewhere a child runs at this
// process's priority.
func lowerThreadPriority(int) {}

func onMainThread() bool { return false }
