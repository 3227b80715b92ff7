package fsm

import (
	"fmt"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
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
		if _, ok := seen[string(e.kv.Key)]; !ok {
			seen[string(e.kv.Key)] = struct{}{}
			keys = append(keys, e.kv.Key)
		}
	}
	var drop []*mvccpb.KeyValue
	for _, key := range keys {
		drop = appendDroppable(drop, w.versions.w, &w.probe, key, rev)
	}
	if len(drop) == 0 {
		return
	}
	for _, kv := range drop {
		w.deleteVersion(kv)
	}
}

// appendDroppable appends the versions of key that compacting to rev drops.
func appendDroppable(drop []*mvccpb.KeyValue, t *kvTree, probe *mvccpb.KeyValue, key []byte, rev int64) []*mvccpb.KeyValue {
	var keep *mvccpb.KeyValue // newest version <= rev so far
	probe.Key, probe.ModRevision = key, math.MinInt64
	defer func() { probe.Key, probe.ModRevision = nil, 0 }()
	t.Ascend(probe, func(kv *mvccpb.KeyValue) bool {
		if kv.ModRevision > rev || string(kv.Key) != string(key) {
			return false
		}
		if keep != nil {
			drop = append(drop, keep)
		}
		keep = kv
		return true
	})
	if keep != nil && isTombstone(keep) {
		drop = append(drop, keep) // a key deleted at or before rev leaves nothing
	}
	return drop
}
