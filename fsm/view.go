package fsm

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// View is the immutable state at one applied index. It is safe for
// concurrent use and stays valid (and unchanged) after newer views are
// published. KeyValues it returns (Range, Events) are fresh, but their Key
// and Value bytes are shared with the store and must be treated as
// read-only.
type View struct {
	state
	next chan struct{} // closed when a newer view is published
}

// Index is the last applied raft index.
func (v *View) Index() uint64 { return v.index }

// Keys is the number of live keys.
func (v *View) Keys() int { return v.current.Len() }

// Rev is the current revision: the index of the last command that wrote.
func (v *View) Rev() int64 { return v.rev }

// CompactRev is the revision the store was last compacted to; reads and
// watches below it fail with ErrCompacted.
func (v *View) CompactRev() int64 { return v.compactRev }

// HistoryBytes is the accounted size of the retained event history (each
// event's version: key, value and overhead).
func (v *View) HistoryBytes() int64 { return v.events.bytes() }

// HistoryKeepWithin returns the revision to compact to so that the retained
// history accounts for at most limit bytes (plus at most one revision), or
// 0 when it already does.
func (v *View) HistoryKeepWithin(limit int64) int64 { return v.events.keepWithin(limit) }

// Next returns a channel closed once a newer view than v is published.
func (v *View) Next() <-chan struct{} { return v.next }

// Range answers a RangeRequest as etcd does. The response header is nil.
func (v *View) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	rd := v.reader()
	defer probes.Put(rd.probe)
	resp, err := rd.rangeKVs(r)
	if err != nil {
		return nil, fmt.Errorf("range %q..%q at revision %d: %w", r.GetKey(), r.GetRangeEnd(), r.GetRevision(), err)
	}
	return resp, nil
}

// Events calls fn for every event with revision >= from whose key is in
// [key, end) (end as in etcd), in revision order and, within a revision, in
// the order the command made them, until fn returns false.
func (v *View) Events(from int64, key, end []byte, fn func(rev int64, ev Event) bool) error {
	if from < v.compactRev {
		return fmt.Errorf("events from revision %d: %w (compacted to %d)", from, ErrCompacted, v.compactRev)
	}
	sp := newSpan(key, end)
	for pos := v.events.search(from); pos < v.events.end; pos++ {
		e := v.events.at(pos)
		if sp.contains(e.kv.key()) && !fn(e.rev, e.event()) {
			return nil
		}
	}
	return nil
}

// Lease looks up a lease and the keys attached to it, in key order.
func (v *View) Lease(id int64) (Lease, [][]byte, bool) {
	l, ok := v.leases.Get(Lease{ID: id})
	if !ok {
		return Lease{}, nil, false
	}
	return l, attachedKeys(v.leaseKeys, id), true
}

// Leases lists every lease in ID order.
func (v *View) Leases() []Lease {
	var out []Lease
	v.leases.Scan(func(l Lease) bool {
		out = append(out, l)
		return true
	})
	return out
}

// Hash is an FNV-64a digest of the whole logical state in a canonical
// order: index, revisions, live keys, every retained version, every
// retained event, leases, lease attachments and alarms. Entries are hashed with
// the byte keys of keys.go, so the digest does not depend on how the state
// is held in memory.
func (v *View) Hash() uint64 {
	h := hasher{h: fnv.New64a()}
	h.u64(v.index)
	h.i64(v.rev)
	h.i64(v.compactRev)
	h.section('c', v.current.Len())
	v.current.Scan(func(r *record) bool {
		h.bytes(r.key())
		h.kv(r)
		return true
	})
	h.section('v', v.versions.Len())
	var kbuf []byte
	v.versions.Scan(func(r *record) bool {
		kbuf = appendVersionKey(kbuf[:0], r.key(), r.mod())
		h.bytes(kbuf)
		h.kv(liveOrNil(r))
		return true
	})
	h.section('e', v.events.revisionCount())
	v.events.revisions(func(rev int64, lo, hi int) bool {
		kbuf = binary.BigEndian.AppendUint64(kbuf[:0], uint64(rev))
		h.bytes(kbuf)
		h.u64(uint64(hi - lo))
		for pos := lo; pos < hi; pos++ {
			e := v.events.at(pos)
			h.i64(int64(e.eventType()))
			h.kv(e.kv)
			h.kv(e.prev)
		}
		return true
	})
	h.section('l', v.leases.Len())
	for _, l := range v.Leases() {
		h.i64(l.ID)
		h.i64(l.TTL)
	}
	h.section('a', v.leaseKeys.Len())
	v.leaseKeys.Scan(func(lk leaseKey) bool {
		kbuf = appendLeaseKeyKey(kbuf[:0], lk.id, lk.key)
		h.bytes(kbuf)
		return true
	})
	h.section('m', len(v.alarms))
	for _, a := range v.alarms {
		h.u64(a.MemberID)
		h.i64(int64(a.Type))
	}
	return h.h.Sum64()
}

// HashKV is a digest of the key-value history up to revision rev (0: the
// current revision), like etcd's HashKV: every retained version and deletion
// with a mod revision <= rev, plus the compact revision. Unlike Hash it leaves
// out the applied index and the leases, which move without revisions (a
// failed compare-and-swap, a lease grant), so servers can be compared at
// one revision while clients keep writing. Errors: ErrFutureRev,
// ErrCompacted.
func (v *View) HashKV(rev int64) (uint64, error) {
	if rev == 0 {
		rev = v.rev
	}
	if rev > v.rev {
		return 0, fmt.Errorf("hash at revision %d (current %d): %w", rev, v.rev, ErrFutureRev)
	}
	if rev < v.compactRev {
		return 0, fmt.Errorf("hash at revision %d (compacted at %d): %w", rev, v.compactRev, ErrCompacted)
	}
	h := hasher{h: fnv.New64a()}
	h.i64(rev)
	h.i64(v.compactRev)
	v.versions.Scan(func(r *record) bool {
		if r.mod() <= rev {
			h.kv(r)
		}
		return true
	})
	return h.h.Sum64(), nil
}

// hasher feeds length-prefixed fields into a hash so that field boundaries
// are unambiguous.
type hasher struct {
	h   hash.Hash64
	buf [binary.MaxVarintLen64]byte
}

func (h *hasher) u64(x uint64) { h.h.Write(binary.AppendUvarint(h.buf[:0], x)) }
func (h *hasher) i64(x int64)  { h.h.Write(binary.AppendVarint(h.buf[:0], x)) }
func (h *hasher) bytes(b []byte) {
	h.u64(uint64(len(b)))
	h.h.Write(b)
}
func (h *hasher) section(tag byte, n int) {
	h.h.Write([]byte{tag})
	h.u64(uint64(n))
}

func (h *hasher) kv(r *record) {
	if r == nil {
		h.h.Write([]byte{0})
		return
	}
	f := r.decode()
	h.h.Write([]byte{1})
	h.bytes(f.key)
	h.i64(f.create)
	h.i64(f.mod)
	h.i64(f.ver)
	h.bytes(f.value)
	h.i64(f.lease)
}
