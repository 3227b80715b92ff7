package placement

import (
	"container/list"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/plugins/builtin/scheduler/internal/cluster"
)

// maxCountEntries bounds the selectors whose counts are remembered: enough
// for the workloads being scheduled at any one time.
const maxCountEntries = 256

// matchCounts remembers, for each (namespace, selector) that topology
// spreading asked about, how many pods on each node the selector matches,
// with the node's generation when counted. A later cycle for a pod of the
// same workload (the replicas of a Deployment share a selector) recounts
// only the nodes whose pods changed since, instead of matching every pod
// in the cluster again. Counts live in slices indexed by the nodes' slots:
// no hashing per node. Only the loop goroutine uses it.
type matchCounts struct {
	entries map[countKey]*list.Element
	lru     *list.List // of *countEntry, most recent first
}

type countKey struct {
	namespace, selector string
}

type countEntry struct {
	key countKey
	// bySlot is indexed by NodeInfo.Slot; a zero generation is no count.
	bySlot []countAt
}

type countAt struct {
	generation int64
	n          int
}

func newMatchCounts() *matchCounts {
	return &matchCounts{entries: map[countKey]*list.Element{}, lru: list.New()}
}

// forSelector returns a counter for sel in namespace ns.
func (m *matchCounts) forSelector(sel labels.Selector, ns string) *nodeCounter {
	key := countKey{namespace: ns, selector: sel.String()}
	el, ok := m.entries[key]
	if ok {
		m.lru.MoveToFront(el)
	} else {
		el = m.lru.PushFront(&countEntry{key: key})
		m.entries[key] = el
		if m.lru.Len() > maxCountEntries {
			oldest := m.lru.Back()
			m.lru.Remove(oldest)
			delete(m.entries, oldest.Value.(*countEntry).key)
		}
	}
	return &nodeCounter{entry: el.Value.(*countEntry), sel: sel, ns: ns}
}

// nodeCounter counts the pods one selector matches on nodes.
type nodeCounter struct {
	entry *countEntry
	sel   labels.Selector
	ns    string
}

// count returns the matching pods on n, recounting only if n changed since
// it was last counted.
func (c *nodeCounter) count(n *cluster.NodeInfo) int {
	if n.Generation == 0 {
		return countMatching(n, c.sel, c.ns)
	}
	slots := c.entry.bySlot
	if n.Slot < len(slots) && slots[n.Slot].generation == n.Generation {
		return slots[n.Slot].n
	}
	k := countMatching(n, c.sel, c.ns)
	if n.Slot >= len(slots) {
		slots = append(slots, make([]countAt, n.Slot+1-len(slots))...)
		c.entry.bySlot = slots
	}
	slots[n.Slot] = countAt{generation: n.Generation, n: k}
	return k
}
