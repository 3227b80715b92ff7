package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// model is a reference implementation written for clarity, not speed: the
// whole key map is copied at every revision, so a read at any revision is
// a map lookup. Duplicate-key refusal is checked by its own tests and
// reused here via checkDuplicates.
type model struct {
	index      uint64
	rev        int64
	compactRev int64
	kvs        map[string]*mvccpb.KeyValue
	hist       []modelRev // one entry per writing revision, increasing
	events     []modelEvent
	leases     map[int64]int64
}

type modelRev struct {
	rev int64
	kvs map[string]*mvccpb.KeyValue
}

type modelEvent struct {
	rev int64
	ev  Event
}

func newModel() *model {
	return &model{kvs: map[string]*mvccpb.KeyValue{}, leases: map[int64]int64{}, rev: 1} // an empty store is at revision 1, as etcd
}

// at returns the key map as of revision rev (0 = current).
func (m *model) at(rev int64) map[string]*mvccpb.KeyValue {
	if rev <= 0 || rev >= m.rev {
		return m.kvs
	}
	out := map[string]*mvccpb.KeyValue{}
	for _, h := range m.hist {
		if h.rev <= rev {
			out = h.kvs
		}
	}
	return out
}

func inSpan(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case bytes.Equal(end, []byte{0}):
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

func sortedIn(kvs map[string]*mvccpb.KeyValue, key, end []byte) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for k, v := range kvs {
		if inSpan([]byte(k), key, end) {
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].Key, out[j].Key) < 0 })
	return out
}

func (m *model) checkRev(rev int64) error {
	if rev > m.rev {
		return ErrFutureRev
	}
	if rev > 0 && rev < m.compactRev {
		return ErrCompacted
	}
	return nil
}

// rangeIn answers r over kvs: every match counts; filters, sort (etcd's
// sort.Sort, so ties match) and limit apply to the fetched list.
func (m *model) rangeIn(kvs map[string]*mvccpb.KeyValue, r *pb.RangeRequest) *pb.RangeResponse {
	all := sortedIn(kvs, r.Key, r.RangeEnd)
	resp := &pb.RangeResponse{Count: int64(len(all))}
	if r.CountOnly {
		return resp
	}
	// etcd quirk: without an explicit sort order or filters the limit (+1
	// for More) is applied in key order before a non-key sort target sorts.
	fetched := all
	if r.Limit > 0 && r.SortOrder == pb.RangeRequest_NONE && r.MinModRevision == 0 && r.MaxModRevision == 0 &&
		r.MinCreateRevision == 0 && r.MaxCreateRevision == 0 && int64(len(fetched)) > r.Limit+1 {
		fetched = fetched[:r.Limit+1]
	}
	var list []*mvccpb.KeyValue
	for _, kv := range fetched {
		if (r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision) ||
			(r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision) ||
			(r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision) ||
			(r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision) {
			continue
		}
		list = append(list, kv)
	}
	sortKVs(list, r)
	if r.Limit > 0 && int64(len(list)) > r.Limit {
		list = list[:r.Limit]
		resp.More = true
	}
	for _, kv := range list {
		c := proto.Clone(kv).(*mvccpb.KeyValue)
		if r.KeysOnly {
			c.Value = nil
		}
		resp.Kvs = append(resp.Kvs, c)
	}
	return resp
}

func (m *model) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := m.checkRev(r.Revision); err != nil {
		return nil, err
	}
	return m.rangeIn(m.at(r.Revision), r), nil
}

// apply mirrors Store.Apply for one decoded command.
func (m *model) apply(msg proto.Message, expire bool) Result {
	m.index++
	switch r := msg.(type) {
	case *pb.TxnRequest:
		return m.txn(r)
	case *pb.CompactionRequest:
		if r.Revision <= m.compactRev {
			return Result{Rev: m.rev, Err: ErrCompacted}
		}
		if r.Revision > m.rev {
			return Result{Rev: m.rev, Err: ErrFutureRev}
		}
		m.compactRev = r.Revision
		m.events = slices.DeleteFunc(m.events, func(e modelEvent) bool { return e.rev < r.Revision })
		return Result{Rev: m.rev, Compact: &pb.CompactionResponse{}}
	case *pb.LeaseGrantRequest:
		if _, ok := m.leases[r.ID]; ok {
			return Result{Rev: m.rev, Err: ErrLeaseExists}
		}
		m.leases[r.ID] = r.TTL
		return Result{Rev: m.rev, LeaseGrant: &pb.LeaseGrantResponse{ID: r.ID, TTL: r.TTL}}
	case *pb.LeaseRevokeRequest:
		if _, ok := m.leases[r.ID]; !ok {
			if expire {
				return Result{Rev: m.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
			}
			return Result{Rev: m.rev, Err: ErrLeaseNotFound}
		}
		delete(m.leases, r.ID)
		w := m.begin()
		for _, kv := range sortedIn(m.kvs, []byte{0}, []byte{0}) {
			if kv.Lease == r.ID {
				w.del(kv.Key)
			}
		}
		m.commit(w)
		return Result{Rev: m.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
	}
	panic(fmt.Sprintf("model: unexpected %T", msg))
}

// mwrite is one command's writes on a copy of the key map.
type mwrite struct {
	rev    int64
	kvs    map[string]*mvccpb.KeyValue
	events []Event
}

func (m *model) begin() *mwrite {
	c := make(map[string]*mvccpb.KeyValue, len(m.kvs))
	for k, v := range m.kvs {
		c[k] = v
	}
	return &mwrite{rev: int64(m.index), kvs: c}
}

func (w *mwrite) put(key, val []byte, lease int64) *mvccpb.KeyValue {
	prev := w.kvs[string(key)]
	kv := &mvccpb.KeyValue{Key: key, Value: val, Lease: lease, CreateRevision: w.rev, ModRevision: w.rev, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
	}
	w.kvs[string(key)] = kv
	w.events = append(w.events, Event{Type: mvccpb.PUT, Kv: kv, PrevKv: prev})
	return prev
}

func (w *mwrite) del(key []byte) *mvccpb.KeyValue {
	prev := w.kvs[string(key)]
	if prev == nil {
		return nil
	}
	delete(w.kvs, string(key))
	w.events = append(w.events, Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: key, ModRevision: w.rev}, PrevKv: prev})
	return prev
}

func (m *model) commit(w *mwrite) {
	if len(w.events) == 0 {
		return
	}
	m.rev = w.rev
	m.kvs = w.kvs
	m.hist = append(m.hist, modelRev{rev: w.rev, kvs: w.kvs})
	for _, ev := range w.events {
		m.events = append(m.events, modelEvent{rev: w.rev, ev: ev})
	}
}

func (m *model) holds(c *pb.Compare) bool {
	kvs := sortedIn(m.kvs, c.Key, c.RangeEnd)
	if len(kvs) == 0 {
		if c.Target == pb.Compare_VALUE {
			return false
		}
		kvs = []*mvccpb.KeyValue{{}}
	}
	for _, kv := range kvs {
		f := fields{key: kv.Key, value: kv.Value, create: kv.CreateRevision, mod: kv.ModRevision, ver: kv.Version, lease: kv.Lease}
		if !compareKV(c, f) {
			return false
		}
	}
	return true
}

func (m *model) branch(r *pb.TxnRequest) (bool, []*pb.RequestOp) {
	for _, c := range r.Compare {
		if !m.holds(c) {
			return false, r.Failure
		}
	}
	return true, r.Success
}

// validate checks the ops on the path against the state before the txn.
func (m *model) validate(r *pb.TxnRequest) error {
	_, ops := m.branch(r)
	for _, op := range ops {
		switch t := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			if err := m.checkRev(t.RequestRange.Revision); err != nil {
				return err
			}
		case *pb.RequestOp_RequestPut:
			p := t.RequestPut
			if _, ok := m.kvs[string(p.Key)]; !ok && (p.IgnoreValue || p.IgnoreLease) {
				return ErrKeyNotFound
			}
			if _, ok := m.leases[p.Lease]; p.Lease != 0 && !ok {
				return ErrLeaseNotFound
			}
		case *pb.RequestOp_RequestTxn:
			if err := m.validate(t.RequestTxn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *model) txn(r *pb.TxnRequest) Result {
	if err := checkDuplicates(r); err != nil {
		return Result{Rev: m.rev, Err: ErrDuplicateKey}
	}
	if err := m.validate(r); err != nil {
		return Result{Rev: m.rev, Err: err}
	}
	w := m.begin()
	resp := m.exec(w, r)
	m.commit(w)
	return Result{Rev: m.rev, Txn: resp}
}

// exec runs the path; compares read m.kvs, the state before the txn.
func (m *model) exec(w *mwrite, r *pb.TxnRequest) *pb.TxnResponse {
	ok, ops := m.branch(r)
	resp := &pb.TxnResponse{Succeeded: ok, Responses: []*pb.ResponseOp{}}
	for _, op := range ops {
		ro := &pb.ResponseOp{}
		switch t := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			kvs := w.kvs
			if t.RequestRange.Revision > 0 {
				kvs = m.at(t.RequestRange.Revision)
			}
			ro.Response = &pb.ResponseOp_ResponseRange{ResponseRange: m.rangeIn(kvs, t.RequestRange)}
		case *pb.RequestOp_RequestPut:
			p := t.RequestPut
			val, lease := p.Value, p.Lease
			if old := w.kvs[string(p.Key)]; old != nil {
				if p.IgnoreValue {
					val = old.Value
				}
				if p.IgnoreLease {
					lease = old.Lease
				}
			}
			prev := w.put(p.Key, val, lease)
			pr := &pb.PutResponse{}
			if p.PrevKv && prev != nil {
				pr.PrevKv = prev
			}
			ro.Response = &pb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *pb.RequestOp_RequestDeleteRange:
			d := t.RequestDeleteRange
			dr := &pb.DeleteRangeResponse{}
			for _, kv := range sortedIn(w.kvs, d.Key, d.RangeEnd) {
				w.del(kv.Key)
				dr.Deleted++
				if d.PrevKv {
					dr.PrevKvs = append(dr.PrevKvs, kv)
				}
			}
			ro.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}
		case *pb.RequestOp_RequestTxn:
			ro.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: m.exec(w, t.RequestTxn)}
		}
		resp.Responses = append(resp.Responses, ro)
	}
	return resp
}

// gen makes random commands over a small key space, with keys holding
// 0x00 and prefixes of each other to exercise the versions-tree escaping.
type gen struct {
	r *rand.Rand
	m *model
}

var genKeys = []string{"a", "a\x00", "a\x00b", "ab", "b", "b\xff", "c"}

func (g *gen) key() []byte { return []byte(genKeys[g.r.IntN(len(genKeys))]) }

func (g *gen) end(key []byte) []byte {
	switch g.r.IntN(4) {
	case 0:
		return nil
	case 1:
		return []byte{0}
	default:
		return g.key()
	}
}

func (g *gen) rev() int64 {
	if g.r.IntN(3) == 0 {
		return 0
	}
	return g.m.compactRev - 1 + g.r.Int64N(g.m.rev-g.m.compactRev+3)
}

func (g *gen) lease() int64 {
	if g.r.IntN(2) == 0 {
		return 0
	}
	return 1 + g.r.Int64N(4)
}

func (g *gen) rangeReq() *pb.RangeRequest {
	k := g.key()
	r := &pb.RangeRequest{Key: k, RangeEnd: g.end(k), Revision: g.rev()}
	if g.r.IntN(3) == 0 {
		r.Limit = g.r.Int64N(4)
	}
	if g.r.IntN(4) == 0 {
		r.SortOrder = pb.RangeRequest_SortOrder(g.r.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.r.IntN(5))
	}
	r.CountOnly = g.r.IntN(8) == 0
	r.KeysOnly = g.r.IntN(8) == 0
	if g.r.IntN(6) == 0 {
		r.MinModRevision = g.r.Int64N(g.m.rev + 2)
	}
	if g.r.IntN(6) == 0 {
		r.MaxCreateRevision = g.r.Int64N(g.m.rev + 2)
	}
	return r
}

func (g *gen) op(depth int) *pb.RequestOp {
	switch n := g.r.IntN(10); {
	case n < 4:
		p := &pb.PutRequest{Key: g.key(), Value: []byte(fmt.Sprint(g.r.IntN(5))), Lease: g.lease(), PrevKv: g.r.IntN(2) == 0}
		if g.r.IntN(10) == 0 {
			p.IgnoreValue, p.Value = true, nil
		}
		if g.r.IntN(10) == 0 {
			p.IgnoreLease, p.Lease = true, 0
		}
		return putReqOp(p)
	case n < 6:
		k := g.key()
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k, RangeEnd: g.end(k), PrevKv: g.r.IntN(2) == 0}}}
	case n < 9 || depth > 1:
		return rangeOp(g.rangeReq())
	default:
		return txnOp(g.txn(depth + 1))
	}
}

func (g *gen) txn(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for range g.r.IntN(3) {
		k := g.key()
		c := &pb.Compare{Key: k, Target: pb.Compare_CompareTarget(g.r.IntN(5)), Result: pb.Compare_CompareResult(g.r.IntN(4))}
		if g.r.IntN(4) == 0 {
			c.RangeEnd = g.end(k)
		}
		cur := g.m.kvs[string(k)]
		if cur == nil {
			cur = &mvccpb.KeyValue{}
		}
		switch c.Target {
		case pb.Compare_VALUE:
			c.TargetUnion = &pb.Compare_Value{Value: []byte(fmt.Sprint(g.r.IntN(5)))}
		case pb.Compare_VERSION:
			c.TargetUnion = &pb.Compare_Version{Version: cur.Version + g.r.Int64N(3) - 1}
		case pb.Compare_CREATE:
			c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: cur.CreateRevision}
		case pb.Compare_MOD: // the CAS kube-apiserver does
			c.TargetUnion = &pb.Compare_ModRevision{ModRevision: cur.ModRevision}
		case pb.Compare_LEASE:
			c.TargetUnion = &pb.Compare_Lease{Lease: g.lease()}
		}
		t.Compare = append(t.Compare, c)
	}
	for range 1 + g.r.IntN(3) {
		t.Success = append(t.Success, g.op(depth))
	}
	for range g.r.IntN(3) {
		t.Failure = append(t.Failure, g.op(depth))
	}
	return t
}

// command returns a random command, its decoded message, and whether it
// is an expiry.
func (g *gen) command() (byte, proto.Message) {
	switch n := g.r.IntN(20); {
	case n < 13:
		return CmdTxn, g.txn(0)
	case n < 15:
		return CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 1 + g.r.Int64N(4), TTL: g.r.Int64N(100)}
	case n < 16:
		return CmdLeaseRevoke, &pb.LeaseRevokeRequest{ID: 1 + g.r.Int64N(4)}
	case n < 17:
		return CmdLeaseExpire, &pb.LeaseRevokeRequest{ID: 1 + g.r.Int64N(4)}
	default:
		return CmdCompact, &pb.CompactionRequest{Revision: g.m.compactRev + g.r.Int64N(g.m.rev-g.m.compactRev+2)}
	}
}

var sentinels = []error{ErrCompacted, ErrFutureRev, ErrLeaseNotFound, ErrLeaseExists, ErrDuplicateKey, ErrKeyNotFound, ErrInvalidSortOption}

func sameErr(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	for _, s := range sentinels {
		if errors.Is(a, s) != errors.Is(b, s) {
			return false
		}
	}
	return true
}

func TestModelEquivalence(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			g := &gen{r: rand.New(rand.NewPCG(seed, 7)), m: newModel()}
			s := New()
			for step := range 150 {
				typ, msg := g.command()
				res := s.Apply(s.View().Index()+1, mustEncode(t, typ, msg))
				want := g.m.apply(msg, typ == CmdLeaseExpire)
				ctx := fmt.Sprintf("step %d (%v)", step, msg)
				if !sameErr(res.Err, want.Err) || res.Rev != want.Rev {
					t.Fatalf("%s: err %v rev %d, model err %v rev %d", ctx, res.Err, res.Rev, want.Err, want.Rev)
				}
				if !proto.Equal(res.Txn, want.Txn) || !proto.Equal(res.LeaseGrant, want.LeaseGrant) {
					t.Fatalf("%s:\n got %v\nwant %v", ctx, res.Txn, want.Txn)
				}
				compareReads(t, ctx, g, s.View())
			}
		})
	}
}

// compareReads checks random reads, all events and leases against the model.
func compareReads(t *testing.T, ctx string, g *gen, v *View) {
	t.Helper()
	if v.Rev() != g.m.rev || v.CompactRev() != g.m.compactRev || v.Index() != g.m.index {
		t.Fatalf("%s: rev/compact/index %d/%d/%d, model %d/%d/%d", ctx, v.Rev(), v.CompactRev(), v.Index(), g.m.rev, g.m.compactRev, g.m.index)
	}
	for range 4 {
		r := g.rangeReq()
		got, err := v.Range(r)
		want, werr := g.m.Range(r)
		if !sameErr(err, werr) || !proto.Equal(got, want) {
			t.Fatalf("%s: Range(%v)\n got %v %v\nwant %v %v", ctx, r, got, err, want, werr)
		}
	}
	from := g.m.compactRev + g.r.Int64N(g.m.rev-g.m.compactRev+2)
	var got []modelEvent
	if err := v.Events(from, []byte{0}, []byte{0}, func(rev int64, ev Event) bool {
		got = append(got, modelEvent{rev, ev})
		return true
	}); err != nil {
		t.Fatalf("%s: Events(%d): %v", ctx, from, err)
	}
	var want []modelEvent
	for _, e := range g.m.events {
		if e.rev >= from {
			want = append(want, e)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: Events(%d) gave %d events, model %d", ctx, from, len(got), len(want))
	}
	for i := range got {
		a, b := got[i], want[i]
		if a.rev != b.rev || a.ev.Type != b.ev.Type || !proto.Equal(a.ev.Kv, b.ev.Kv) || !proto.Equal(a.ev.PrevKv, b.ev.PrevKv) {
			t.Fatalf("%s: event %d\n got %d %v\nwant %d %v", ctx, i, a.rev, a.ev, b.rev, b.ev)
		}
	}
	if g.m.compactRev > 0 {
		if err := v.Events(g.m.compactRev-1, []byte("a"), nil, func(int64, Event) bool { return true }); !errors.Is(err, ErrCompacted) {
			t.Fatalf("%s: Events below compaction: %v", ctx, err)
		}
	}
	for id := int64(1); id <= 4; id++ {
		l, keys, ok := v.Lease(id)
		ttl, mok := g.m.leases[id]
		if ok != mok || (ok && (l.TTL != ttl || l.ID != id)) {
			t.Fatalf("%s: Lease(%d) = %v %v, model ttl %d %v", ctx, id, l, ok, ttl, mok)
		}
		var wantKeys [][]byte
		for _, kv := range sortedIn(g.m.kvs, []byte{0}, []byte{0}) {
			if kv.Lease == id {
				wantKeys = append(wantKeys, kv.Key)
			}
		}
		if !slices.EqualFunc(keys, wantKeys, bytes.Equal) {
			t.Fatalf("%s: lease %d keys %q, model %q", ctx, id, keys, wantKeys)
		}
	}
}
