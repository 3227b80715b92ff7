package fsm

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// reader reads keys from trees, either a published view's or the writer's
// own during a transaction (so a txn's ranges see its own earlier writes, as
// in etcd).
type reader struct {
	cur        *kvTree
	ver        *kvTree
	rev        int64 // revision the current tree is at
	compactRev int64
	// probe is the search item for lookups; owned by whoever made the
	// reader, and never held across a call to a visitor.
	probe *record
}

// scanCurrent calls fn for every live key in sp in key order until fn
// returns false.
func (rd reader) scanCurrent(sp span, fn func(r *record) bool) {
	if sp.single {
		if r, ok := getKV(rd.cur, rd.probe, sp.key); ok {
			fn(r)
		}
		return
	}
	it := rd.cur.Iter()
	defer it.Release()
	rd.probe.setProbe(sp.key, 0)
	for ok := it.Seek(rd.probe); ok; ok = it.Next() {
		r := it.Item()
		if sp.beyond(r.key()) || !fn(r) {
			return
		}
	}
}

// linearSteps is how many versions of one key scanAt steps through before
// it seeks instead: most keys have a few versions, and stepping is cheaper
// than a seek for those.
const linearSteps = 8

// scanAt calls fn for every key in sp that was live at revision rev, with
// its value at rev, in key order until fn returns false. Per key it finds
// the newest version <= rev by stepping through a few versions and seeking
// past long histories.
func (rd reader) scanAt(sp span, rev int64, fn func(r *record) bool) {
	it := rd.ver.Iter()
	defer it.Release()
	seek := func(key []byte, r int64) bool {
		rd.probe.setProbe(key, r)
		return it.Seek(rd.probe)
	}
	ok := seek(sp.key, math.MinInt64)
	for ok {
		key := it.Item().key()
		if !sp.contains(key) {
			if sp.beyond(key) {
				return
			}
			ok = it.Next() // unreachable: the seek starts inside the span
			continue
		}
		var best *record
		for steps := 0; ok; steps++ {
			r := it.Item()
			if !bytes.Equal(r.key(), key) || r.mod() > rev {
				break
			}
			if steps == linearSteps {
				// Long history: land on the newest version <= rev directly.
				if seek(key, rev+1) {
					it.Prev()
				} else {
					it.Last()
				}
				r = it.Item()
			}
			best = r
			ok = it.Next()
		}
		if best != nil && !best.isTombstone() && !fn(best) {
			return
		}
		// Skip the rest of this key's versions (newer than rev).
		for steps := 0; ok && bytes.Equal(it.Item().key(), key); steps++ {
			if steps == linearSteps {
				ok = seek(key, math.MaxInt64)
				break
			}
			ok = it.Next()
		}
	}
}

// scan visits sp at revision rev (0 = current).
func (rd reader) scan(sp span, rev int64, fn func(r *record) bool) {
	if rev <= 0 || rev >= rd.rev {
		rd.scanCurrent(sp, fn)
		return
	}
	rd.scanAt(sp, rev, fn)
}

// checkRev validates a read revision as etcd does.
func (rd reader) checkRev(rev int64) error {
	if rev > rd.rev {
		return fmt.Errorf("%w: revision %d > current %d", ErrFutureRev, rev, rd.rev)
	}
	if rev > 0 && rev < rd.compactRev {
		return fmt.Errorf("%w: revision %d < compacted %d", ErrCompacted, rev, rd.compactRev)
	}
	return nil
}

// checkSort refuses sort options etcd's API refuses, since etcd itself
// would crash on them.
func checkSort(r *pb.RangeRequest) error {
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return fmt.Errorf("%w: sort order %d", ErrInvalidSortOption, r.GetSortOrder())
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return fmt.Errorf("%w: sort target %d", ErrInvalidSortOption, r.GetSortTarget())
	}
	return nil
}

// rangeKVs answers a RangeRequest exactly as etcd's executeRange does.
func (rd reader) rangeKVs(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := rd.checkRev(r.GetRevision()); err != nil {
		return nil, err
	}
	if err := checkSort(r); err != nil {
		return nil, err
	}
	limit := r.GetLimit()
	if r.GetSortOrder() != pb.RangeRequest_NONE || r.GetMinModRevision() != 0 || r.GetMaxModRevision() != 0 ||
		r.GetMinCreateRevision() != 0 || r.GetMaxCreateRevision() != 0 {
		limit = 0 // fetch everything; filter, sort and truncate afterwards
	}
	if limit > 0 {
		limit++ // one extra for the more flag
	}
	var kvs []*mvccpb.KeyValue
	var count int64
	rd.scan(newSpan(r.GetKey(), r.GetRangeEnd()), r.GetRevision(), func(rec *record) bool {
		count++
		if !r.GetCountOnly() && (limit <= 0 || int64(len(kvs)) < limit) {
			kvs = append(kvs, rec.kv())
		}
		return true
	})
	kvs = filterKVs(kvs, r)
	sortKVs(kvs, r)
	resp := &pb.RangeResponse{Count: count}
	if r.GetLimit() > 0 && int64(len(kvs)) > r.GetLimit() {
		kvs = kvs[:r.GetLimit()]
		resp.More = true
	}
	if len(kvs) > 0 {
		resp.Kvs = kvs // fresh KeyValues, made by the scan
		if r.GetKeysOnly() {
			for _, kv := range kvs {
				kv.Value = nil
			}
		}
	}
	return resp, nil
}

// filterKVs applies the min/max revision filters.
func filterKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	minMod, maxMod := r.GetMinModRevision(), r.GetMaxModRevision()
	minCreate, maxCreate := r.GetMinCreateRevision(), r.GetMaxCreateRevision()
	if minMod == 0 && maxMod == 0 && minCreate == 0 && maxCreate == 0 {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case maxMod != 0 && kv.ModRevision > maxMod,
			minMod != 0 && kv.ModRevision < minMod,
			maxCreate != 0 && kv.CreateRevision > maxCreate,
			minCreate != 0 && kv.CreateRevision < minCreate:
			continue
		}
		out = append(out, kv)
	}
	return out
}

// sortKVs sorts as etcd does. It deliberately uses the same unstable
// sort.Sort with the same comparisons, so ties come out in etcd's order.
func sortKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) {
	order, target := r.GetSortOrder(), r.GetSortTarget()
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	} else if target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND {
		order = pb.RangeRequest_NONE // already in key order
	}
	if order == pb.RangeRequest_NONE {
		return
	}
	var s sort.Interface
	switch target {
	case pb.RangeRequest_KEY:
		s = kvSort{kvs, func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }}
	case pb.RangeRequest_VERSION:
		s = kvSort{kvs, func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }}
	case pb.RangeRequest_CREATE:
		s = kvSort{kvs, func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }}
	case pb.RangeRequest_MOD:
		s = kvSort{kvs, func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }}
	case pb.RangeRequest_VALUE:
		s = kvSort{kvs, func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }}
	default:
		return
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(s)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(s))
	}
}

type kvSort struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s kvSort) Len() int           { return len(s.kvs) }
func (s kvSort) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s kvSort) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }
