package fsm

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
func (b *batch) put(key, value []byte, lease int64) (prev *record) {
	w := b.w
	prev, _ = w.get(key)
	f := fields{key: key, value: value, lease: lease, create: b.rev, mod: b.rev, ver: 1}
	var prevLease int64
	if prev != nil {
		p := prev.decode()
		f.create, f.ver, prevLease = p.create, p.ver+1, p.lease
	}
	rec := newRecord(f)
	// The lease index holds the record's own key, so nothing retains the
	// command's bytes.
	if prevLease != 0 && prevLease != lease {
		w.leaseKeys.mut().Delete(leaseKey{prevLease, rec.key()})
	}
	if lease != 0 && prevLease != lease {
		w.leaseKeys.mut().Set(leaseKey{lease, rec.key()})
	}
	w.current.mut().Set(rec)
	w.setVersion(rec)
	w.events.append(b.rev, rec, prev)
	b.wrote = true
	return prev
}

// del deletes key if it exists and returns its previous value.
func (b *batch) del(key []byte) (prev *record) {
	w := b.w
	prev, ok := w.get(key)
	if !ok {
		return nil
	}
	w.current.mut().Delete(prev)
	p := prev.decode()
	if p.lease != 0 {
		w.leaseKeys.mut().Delete(leaseKey{p.lease, p.key})
	}
	// Like etcd, a delete event's Kv is the key with the delete's revision.
	// It doubles as the tombstone version (Version 0).
	tomb := tombstone(p.key, b.rev)
	w.setVersion(tomb)
	w.events.append(b.rev, tomb, prev)
	b.wrote = true
	return prev
}

// deleteSpan deletes every live key in sp in key order and returns the
// previous values.
func (b *batch) deleteSpan(sp span) []*record {
	var keys [][]byte
	b.reader().scanCurrent(sp, func(r *record) bool {
		keys = append(keys, r.key())
		return true
	})
	prevs := make([]*record, 0, len(keys))
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
