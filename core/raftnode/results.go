package raftnode

// maxHeldResults bounds how many results heldResults keeps. It is only
// reached when a forwarded write stays in flight while this many other
// commands are applied (a leader that answers very late); that write then
// reports an unknown outcome instead of its result.
const maxHeldResults = 1 << 16

// heldResults keeps the state machine's results for writes this node
// forwarded to the leader. The forwarder learns the command's index only
// from the leader's answer, and by then its own state machine may already
// have applied it, so before sending it takes a hold at its current applied
// index (the floor), and results are recorded only while holds exist.
//
// Invariant: while a hold with floor F is active, the result of every command
// with index > F applied since is held, unless more than maxHeldResults are
// (then the oldest go). The leader's index for a forwarded command is always
// above the floor taken before sending it: the leader assigns it after the
// request arrives, above its own commit index, which is at least the
// forwarder's applied index. A result is also missing if a snapshot install
// skipped the entry; the forwarder then reports an unknown outcome.
//
// Not safe for concurrent use; fsmAdapter.mu guards it.
type heldResults struct {
	floors  map[uint64]int // active holds: floor -> count
	min     uint64         // lowest active floor, when floors is not empty
	byIndex map[uint64]any
	lo      uint64 // nothing below lo is held
}

func newHeldResults() heldResults {
	return heldResults{floors: map[uint64]int{}, byIndex: map[uint64]any{}}
}

func (h *heldResults) hold(floor uint64) {
	if len(h.floors) == 0 {
		h.min, h.lo = floor, floor+1
	}
	// Floors are applied indexes, which never go backwards, so a new floor
	// is never below min.
	h.floors[floor]++
}

func (h *heldResults) release(floor uint64) {
	if h.floors[floor]--; h.floors[floor] <= 0 {
		delete(h.floors, floor)
	}
	if len(h.floors) == 0 {
		clear(h.byIndex)
		return
	}
	newMin := h.min
	first := true
	for f := range h.floors {
		if first || f < newMin {
			newMin, first = f, false
		}
	}
	for ; h.lo <= newMin; h.lo++ {
		delete(h.byIndex, h.lo)
	}
	h.min = newMin
}

func (h *heldResults) record(index uint64, res any) {
	if len(h.floors) == 0 || index <= h.min {
		return
	}
	h.byIndex[index] = res
	for len(h.byIndex) > maxHeldResults {
		delete(h.byIndex, h.lo)
		h.lo++
	}
}

// take returns and forgets the result at index.
func (h *heldResults) take(index uint64) (any, bool) {
	res, ok := h.byIndex[index]
	if ok {
		delete(h.byIndex, index)
	}
	return res, ok
}
