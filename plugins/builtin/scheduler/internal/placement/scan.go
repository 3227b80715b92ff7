package placement

import (
	"sync"
	"sync/atomic"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

const (
	// scanChunk is how many nodes a scan worker filters per claim: big
	// enough that claiming costs little, small enough that the scan stops
	// soon after enough nodes were found.
	scanChunk = 32
	// parallelMin is the least work worth spreading over goroutines:
	// filtering one node costs well under a microsecond, starting a
	// goroutine about as much.
	parallelMin = 4 * scanChunk
)

// scanScratch is reused by successive scans to spare the allocations.
type scanScratch struct {
	verdicts []uint8 // per scan position: 0 not scanned, 1 feasible, 2 rejected
	statuses []Status
}

// findFeasible filters nodes from the engine's rotating start position until
// want nodes pass or all were tried, records every rejection in diag, and
// returns the feasible nodes with how many positions were consumed (where
// the next scan resumes).
func (e *Engine) findFeasible(c *cycle, nodes []*cluster.NodeInfo, want int, diag *Diagnosis) ([]*cluster.NodeInfo, int) {
	if e.cfg.Parallelism <= 1 || len(nodes) < parallelMin {
		return e.scanInline(c, nodes, want, diag)
	}
	return e.scanParallel(c, nodes, want, diag)
}

func (e *Engine) scanInline(c *cycle, nodes []*cluster.NodeInfo, want int, diag *Diagnosis) ([]*cluster.NodeInfo, int) {
	n := len(nodes)
	start := e.nextStart % n
	feasible := make([]*cluster.NodeInfo, 0, want)
	scanned := 0
	for i := 0; i < n && len(feasible) < want; i++ {
		node := nodes[(start+i)%n]
		scanned++
		if st := c.filterWithNominated(node); st.OK() {
			feasible = append(feasible, node)
		} else {
			diag.add(node, st)
		}
	}
	return feasible, scanned
}

// scanParallel has workers claim chunks of positions in order until enough
// nodes passed, then reads the verdicts back in position order, so the
// result is the one a sequential scan of the same positions would give.
func (e *Engine) scanParallel(c *cycle, nodes []*cluster.NodeInfo, want int, diag *Diagnosis) ([]*cluster.NodeInfo, int) {
	n := len(nodes)
	start := e.nextStart % n
	if cap(e.scratch.verdicts) < n {
		e.scratch.verdicts = make([]uint8, n)
		e.scratch.statuses = make([]Status, n)
	}
	verdicts, statuses := e.scratch.verdicts[:n], e.scratch.statuses[:n]
	numChunks := (n + scanChunk - 1) / scanChunk
	var next, found atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		defer wg.Done()
		for found.Load() < int64(want) {
			ci := int(next.Add(1) - 1)
			if ci >= numChunks {
				return
			}
			for i := ci * scanChunk; i < min((ci+1)*scanChunk, n); i++ {
				st := c.filterWithNominated(nodes[(start+i)%n])
				if st.OK() {
					verdicts[i] = 1
					found.Add(1)
				} else {
					verdicts[i], statuses[i] = 2, st
				}
			}
		}
	}
	workers := min(e.cfg.Parallelism, numChunks)
	wg.Add(workers)
	for range workers - 1 {
		go work()
	}
	work()
	wg.Wait()

	// Every chunk claimed was scanned in full, so positions below the
	// claimed ones are all decided.
	limit := min(int(next.Load())*scanChunk, n)
	feasible := make([]*cluster.NodeInfo, 0, want)
	scanned := limit
gather:
	for i := 0; i < limit; i++ {
		switch verdicts[i] {
		case 1:
			if len(feasible) == want {
				scanned = i
				break gather
			}
			feasible = append(feasible, nodes[(start+i)%n])
		case 2:
			diag.add(nodes[(start+i)%n], statuses[i])
		}
	}
	clear(verdicts[:limit])
	clear(statuses[:limit])
	return feasible, scanned
}

// parallel runs fn over [0, n) split into one range per worker, or inline
// when n is small.
func (e *Engine) parallel(n int, fn func(lo, hi int)) {
	workers := e.cfg.Parallelism
	if workers <= 1 || n < parallelMin {
		fn(0, n)
		return
	}
	workers = min(workers, n/scanChunk)
	size := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := size; lo < n; lo += size {
		wg.Add(1)
		go func(lo int) {
			defer wg.Done()
			fn(lo, min(lo+size, n))
		}(lo)
	}
	fn(0, min(size, n))
	wg.Wait()
}
