package testnet

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNamespace runs f with the calling goroutine's thread in the named
// network namespace ns ("" runs f where it is): sockets f creates belong to
// ns and keep working from any goroutine afterwards.
func InNamespace(ns string, f func() error) error {
	if ns == "" {
		return f()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: keep it locked, so the
		// runtime discards it with this goroutine.
		return fmt.Errorf("returning to the test's namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}
