package fsm

import (
	"bytes"

	"github.com/tidwall/btree"
)

// The keyed state lives in copy-on-write B-trees (github.com/tidwall/btree).
//
// Concurrency contract, checked against btreeg.go of v1.8.2:
//   - Trees are built with NoLocks, so no method takes a lock and read-only
//     methods (Get, Ascend, Scan, Iter with Seek/Next/Prev, Len) write
//     nothing: they walk nodes through isoLoad(cn, mut=false), which returns
//     the node without touching it.
//   - Every node carries the isoid of the tree that created it, and a
//     mutating method clones any node whose isoid differs from its tree's
//     (isoLoad(cn, true), nodeSet) before writing it.
//   - Copy() gives both the source and the copy fresh isoids, so after it
//     no tree owns the shared nodes and neither side can write them again.
//
// So the writer keeps one private tree per kind (cow.w) that it mutates in
// place, and publishes cow.w.Copy() (cow.r). Published copies are never
// mutated nor copied again (Copy writes its source's isoid), so readers of
// any published view race with nothing; the atomic publication of the View
// orders the writer's node writes before every read.
type cow[T any] struct {
	w *btree.BTreeG[T] // the writer's tree; only the Apply goroutine touches it
	r *btree.BTreeG[T] // frozen copy of w, nil when w changed since the last
}

// treeDegree makes nodes of up to 2*treeDegree-1 items. Small nodes keep
// the path a write clones short; see BenchmarkApplyPut.
const treeDegree = 16

func newCow[T any](less func(a, b T) bool) cow[T] {
	return cow[T]{w: btree.NewBTreeGOptions(less, btree.Options{Degree: treeDegree, NoLocks: true})}
}

// mut returns the writer's tree for a write and forgets the frozen copy.
func (c *cow[T]) mut() *btree.BTreeG[T] {
	c.r = nil
	return c.w
}

// frozen returns an immutable copy of the writer's tree, reusing the last
// one when nothing was written since.
func (c *cow[T]) frozen() *btree.BTreeG[T] {
	if c.r == nil {
		c.r = c.w.Copy()
	}
	return c.r
}

// kvTree holds records ordered by key (current, byKey) or by key then
// revision (versions, byKeyRev). A tombstone (a delete) is a record with
// Version 0, exactly the delete event's Kv, which it shares.
type kvTree = btree.BTreeG[*record]

// leaseKey attaches key to lease id in the lease index.
type leaseKey struct {
	id  int64
	key []byte
}

func byLeaseKey(a, b leaseKey) bool {
	if a.id != b.id {
		return a.id < b.id
	}
	return bytes.Compare(a.key, b.key) < 0
}

func byLeaseID(a, b Lease) bool { return a.ID < b.ID }

// getKV looks key up in a tree ordered by key, using probe (owned by the
// caller) as the search item so the lookup does not allocate.
func getKV(t *kvTree, probe *record, key []byte) (*record, bool) {
	probe.setProbe(key, 0)
	return t.Get(probe)
}
