package fsm

import (
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// batch makes the writes of one command in the writer's state. All writes
// share the revision index; nothing is visible to readers until the Store
// publishes the writer's state after the command.
type batch struct {
	w     *writer
	base  int64 // revision before the command
	rev   int64 // the command's revision (its raft index)
	wrote bool
}

func newBatch(w *writer) *batch {
	return &batch{w: w, base: w.rev, rev: int64(w.index)}
}

// reader sees the batch's own writes, as a range inside an etcd txn does.
func (b *batch) reader() reader {
	rev := b.base
	if b.wrote {
		rev = b.rev
	}
	return reader{cur: b.w.current.w, ver: b.w.versions.w, rev: rev, compactRev: b.w.compactRev, probe: &b.w.probe}
}

// put writes key=value attached to lease and returns the previous value.
func (b *batch) put(key, value []byte, lease int64) (prev *mvccpb.KeyValue) {
	w := b.w
	prev, _ = w.get(key)
	kv := &mvccpb.KeyValue{Key: key, Value: value, Lease: lease, CreateRevision: b.rev, ModRevision: b.rev, Version: 1}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if prev.Lease != 0 && prev.Lease != lease {
			w.leaseKeys.mut().Delete(leaseKey{prev.Lease, key})
		}
	}
	if lease != 0 && (prev == nil || prev.Lease != lease) {
		w.leaseKeys.mut().Set(leaseKey{lease, key})
	}
	w.current.mut().Set(kv)
	w.setVersion(kv)
	w.events.append(b.rev, Event{Type: mvccpb.PUT, Kv: kv, PrevKv: prev})
	b.wrote = true
	return prev
}

// del deletes key if it exists and returns its previous value.
func (b *batch) del(key []byte) (prev *mvccpb.KeyValue) {
	w := b.w
	prev, ok := w.get(key)
	if !ok {
		return nil
	}
	w.current.mut().Delete(prev)
	if prev.Lease != 0 {
		w.leaseKeys.mut().Delete(leaseKey{prev.Lease, prev.Key})
	}
	// Like etcd, a delete event's Kv is the key with the delete's revision.
	// It doubles as the tombstone version (Version 0).
	tomb := &mvccpb.KeyValue{Key: prev.Key, ModRevision: b.rev}
	w.setVersion(tomb)
	w.events.append(b.rev, Event{Type: mvccpb.DELETE, Kv: tomb, PrevKv: prev})
	b.wrote = true
	return prev
}

// deleteSpan deletes every live key in sp in key order and returns the
// previous values.
func (b *batch) deleteSpan(sp span) []*mvccpb.KeyValue {
	var keys [][]byte
	b.reader().scanCurrent(sp, func(kv *mvccpb.KeyValue) bool {
		keys = append(keys, kv.Key)
		return true
	})
	prevs := make([]*mvccpb.KeyValue, 0, len(keys))
	for _, k := range keys {
		prevs = append(prevs, b.del(k))
	}
	return prevs
}

// commit ends the command: a batch that wrote moves the revision.
func (b *batch) commit() {
	if b.wrote {
		b.w.rev = b.rev
	}
}
