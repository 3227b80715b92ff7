package fsm

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// batch collects the writes of one command. All writes share the revision
// index; one iradix Txn per tree means one commit per tree per command.
type batch struct {
	base      state
	rev       int64 // the command's revision (its raft index)
	wrote     bool
	cur       *iradix.Txn[*mvccpb.KeyValue]
	ver       *iradix.Txn[*mvccpb.KeyValue]
	leaseKeys *iradix.Txn[struct{}]
	events    []Event
}

func newBatch(st state) *batch {
	return &batch{
		base:      st,
		rev:       int64(st.index),
		cur:       st.current.Txn(),
		ver:       st.versions.Txn(),
		leaseKeys: st.leaseKeys.Txn(),
	}
}

// reader sees the batch's own writes, as a range inside an etcd txn does.
func (b *batch) reader() reader {
	rev := b.base.rev
	if b.wrote {
		rev = b.rev
	}
	return reader{cur: b.cur.Root(), ver: b.ver.Root(), rev: rev, compactRev: b.base.compactRev}
}

// put writes key=value attached to lease and returns the previous value.
func (b *batch) put(key, value []byte, lease int64) (prev *mvccpb.KeyValue) {
	prev, _ = b.cur.Get(key)
	kv := &mvccpb.KeyValue{Key: key, Value: value, Lease: lease, CreateRevision: b.rev, ModRevision: b.rev, Version: 1}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if prev.Lease != 0 && prev.Lease != lease {
			b.leaseKeys.Delete(leaseKeyKey(prev.Lease, key))
		}
	}
	if lease != 0 {
		b.leaseKeys.Insert(leaseKeyKey(lease, key), struct{}{})
	}
	b.cur.Insert(key, kv)
	b.ver.Insert(versionKey(key, b.rev), kv)
	b.events = append(b.events, Event{Type: mvccpb.PUT, Kv: kv, PrevKv: prev})
	b.wrote = true
	return prev
}

// del deletes key if it exists and returns its previous value.
func (b *batch) del(key []byte) (prev *mvccpb.KeyValue) {
	prev, ok := b.cur.Delete(key)
	if !ok {
		return nil
	}
	if prev.Lease != 0 {
		b.leaseKeys.Delete(leaseKeyKey(prev.Lease, key))
	}
	b.ver.Insert(versionKey(key, b.rev), nil)
	// Like etcd, a delete event's Kv is the key with the delete's revision.
	b.events = append(b.events, Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: prev.Key, ModRevision: b.rev}, PrevKv: prev})
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

// commit returns the state with the batch's writes. A batch that wrote
// nothing leaves the revision and trees untouched.
func (b *batch) commit() state {
	st := b.base
	if !b.wrote {
		return st
	}
	st.rev = b.rev
	st.current = b.cur.Commit()
	st.versions = b.ver.Commit()
	st.leaseKeys = b.leaseKeys.Commit()
	st.events, _, _ = st.events.Insert(revKey(b.rev), b.events)
	return st
}
