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
// in the cluster again. Only the loop goroutine uses it.
type matchCounts struct {
	entries map[countKey]*list.Element
	lru     *list.List // of *countEntry, most recent first
}

type countKey struct {
	namespace, selector string
}

type countEntry struct {
	key    countKey
	byNode map[string]countAt
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
		el = m.lru.PushFront(&countEntry{key: key, byNode: map[string]countAt{}})
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
	if at, ok := c.entry.byNode[n.Name]; ok && at.generation == n.Generation {
		return at.n
	}
	k := countMatching(n, c.sel, c.ns)
	c.entry.byNode[n.Name] = countAt{generation: n.Generation, n: k}
	return k
}

// prune forgets nodes that no longer exist, once the entry holds many more
// nodes than the cluster has.
func (c *nodeCounter) prune(nodes []*cluster.NodeInfo) {
	if len(c.entry.byNode) <= 2*len(nodes)+16 {
		return
	}
	live := make(map[string]countAt, len(nodes))
	for _, n := range nodes {
		if at, ok := c.entry.byNode[n.Name]; ok {
			live[n.Name] = at
		}
	}
	c.entry.byNode = live
}
