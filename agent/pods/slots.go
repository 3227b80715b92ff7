package pods

import (
	"context"
	goruntime "runtime"
)

// slots bounds how many pods do one kind of start-up work at once. A batch
// of pods created together would otherwise start every CNI plugin, shim and
// runc at the same moment, and on a small node all of them would finish
// late together; bounded, they finish one after another, the first ones
// early, and the node spends less on contention.
type slots chan struct{}

// defaultStartSlots is how many pods of a batch wire their network, and how
// many create and start a container, at the same time: twice the CPUs, so
// that one pod's fsync or exec wait overlaps another's CPU work.
func defaultStartSlots() int { return 2 * goruntime.NumCPU() }

func newSlots(n int) slots {
	if n <= 0 {
		n = defaultStartSlots()
	}
	return make(slots, n)
}

// acquire takes a slot, or fails when ctx ends first; release returns it.
func (s slots) acquire(ctx context.Context) error {
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s slots) release() { <-s }
