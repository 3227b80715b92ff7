package fsm

import (
	"bytes"
	"encoding/binary"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// applyCompact drops history below r. Reads and watches at r itself stay
// valid: each key keeps its newest version <= r (unless that is a delete)
// and events at r and later are kept.
func applyCompact(st state, r *pb.CompactionRequest) (state, Result) {
	rev := r.GetRevision()
	if rev <= st.compactRev {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: compact to %d, already compacted to %d", ErrCompacted, rev, st.compactRev)}
	}
	if rev > st.rev {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: compact to %d, current revision %d", ErrFutureRev, rev, st.rev)}
	}
	st.versions = compactVersions(st.versions, rev)
	et := st.events.Txn()
	it := st.events.Root().Iterator()
	for k, _, ok := it.Next(); ok; k, _, ok = it.Next() {
		if int64(binary.BigEndian.Uint64(k)) >= rev {
			break
		}
		et.Delete(k)
	}
	st.events = et.Commit()
	st.compactRev = rev
	return st, Result{Rev: st.rev, Compact: &pb.CompactionResponse{}}
}

// compactVersions deletes, per key, every version <= rev except the newest
// one, and that one too when it is a tombstone.
func compactVersions(t *iradix.Tree[*mvccpb.KeyValue], rev int64) *iradix.Tree[*mvccpb.KeyValue] {
	txn := t.Txn()
	var group, keep []byte // keep: newest version <= rev seen in group
	var keepKV *mvccpb.KeyValue
	finish := func() {
		if keep != nil && keepKV == nil {
			txn.Delete(keep) // a key deleted at or before rev leaves nothing
		}
		keep, keepKV = nil, nil
	}
	it := t.Root().Iterator()
	for vk, kv, ok := it.Next(); ok; vk, kv, ok = it.Next() {
		g, r := splitVersionKey(vk)
		if !bytes.Equal(g, group) {
			finish()
			group = g
		}
		if r > rev {
			continue
		}
		if keep != nil {
			txn.Delete(keep)
		}
		keep, keepKV = vk, kv
	}
	finish()
	return txn.Commit()
}
