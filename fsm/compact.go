package fsm

import (
	"fmt"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// applyCompact drops history below r. Reads and watches at r itself stay
// valid: each key keeps its newest version <= r (unless that is a delete)
// and events at r and later are kept.
func (w *writer) applyCompact(r *pb.CompactionRequest) Result {
	rev := r.GetRevision()
	if rev <= w.compactRev {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: compact to %d, already compacted to %d", ErrCompacted, rev, w.compactRev)}
	}
	if rev > w.rev {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: compact to %d, current revision %d", ErrFutureRev, rev, w.rev)}
	}
	w.compactVersions(rev)
	w.events = w.events.dropBefore(rev)
	w.compactRev = rev
	return Result{Rev: w.rev, Compact: &pb.CompactionResponse{}}
}

// compactVersions deletes, per key, every version <= rev except the newest
// one, and that one too when it is a tombstone.
//
// Only keys written since the last compaction can have anything to drop:
// the last compaction left every other key at most one version at or below
// it, and a live one. Those keys are exactly the keys of the events still
// retained up to rev, so the work is proportional to the history dropped,
// not to the size of the store.
func (w *writer) compactVersions(rev int64) {
	seen := map[string]struct{}{}
	var keys [][]byte
	for pos := w.events.start; pos < w.events.end; pos++ {
		e := w.events.at(pos)
		if e.rev > rev {
			break
		}
		key := e.kv.key()
		if _, ok := seen[string(key)]; !ok {
			seen[string(key)] = struct{}{}
			keys = append(keys, key)
		}
	}
	var drop []*record
	for _, key := range keys {
		drop = appendDroppable(drop, w.versions.w, &w.probe, key, rev)
	}
	if len(drop) == 0 {
		return
	}
	for _, r := range drop {
		w.deleteVersion(r)
	}
}

// appendDroppable appends the versions of key that compacting to rev drops.
func appendDroppable(drop []*record, t *kvTree, probe *record, key []byte, rev int64) []*record {
	var keep *record // newest version <= rev so far
	probe.setProbe(key, math.MinInt64)
	t.Ascend(probe, func(r *record) bool {
		if r.mod() > rev || string(r.key()) != string(key) {
			return false
		}
		if keep != nil {
			drop = append(drop, keep)
		}
		keep = r
		return true
	})
	if keep != nil && keep.isTombstone() {
		drop = append(drop, keep) // a key deleted at or before rev leaves nothing
	}
	return drop
}
