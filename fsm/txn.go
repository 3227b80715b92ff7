package fsm

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// applyTxn runs a TxnRequest the way etcd does: refuse duplicate writes,
// evaluate every compare on the path against the state before the txn,
// validate the chosen ops, then execute them in order at one revision.
func (w *writer) applyTxn(r *pb.TxnRequest) Result {
	if err := checkDuplicates(r); err != nil {
		return Result{Rev: w.rev, Err: err}
	}
	if hasAlarm(w.alarms, pb.AlarmType_NOSPACE) && txnHasPut(r) {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: a transaction that puts is refused while the NOSPACE alarm is raised", ErrNoSpace)}
	}
	b := newBatch(w)
	p := planTxn(b.reader(), r)
	if err := checkPlan(b, p); err != nil {
		return Result{Rev: w.rev, Err: err}
	}
	resp := b.execute(p)
	b.commit()
	return Result{Rev: w.rev, Txn: resp}
}

// plan is one txn with its compare outcome decided, like etcd's txnPath.
type plan struct {
	succeeded bool
	ops       []*pb.RequestOp
	sub       []*plan // per op: the nested txn's plan, nil for other ops (all nil without nested txns)
}

// planTxn evaluates compares of r and of every nested txn on the chosen
// path against rd. etcd decides the whole path before the first write, so a
// nested compare does not see writes made earlier in the same txn.
func planTxn(rd reader, r *pb.TxnRequest) *plan {
	p := &plan{succeeded: compareAll(rd, r.GetCompare())}
	p.ops = r.GetSuccess()
	if !p.succeeded {
		p.ops = r.GetFailure()
	}
	for i, op := range p.ops {
		if t, ok := op.GetRequest().(*pb.RequestOp_RequestTxn); ok {
			if p.sub == nil {
				p.sub = make([]*plan, len(p.ops)) // only txns with nested txns need it
			}
			p.sub[i] = planTxn(rd, t.RequestTxn)
		}
	}
	return p
}

// checkPlan validates the ops on the path before anything is written, so a
// failing txn writes nothing.
func checkPlan(b *batch, p *plan) error {
	rd := b.reader()
	for i, op := range p.ops {
		switch t := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			if err := rd.checkRev(t.RequestRange.GetRevision()); err != nil {
				return err
			}
			if err := checkSort(t.RequestRange); err != nil {
				return err
			}
		case *pb.RequestOp_RequestPut:
			if err := checkPut(b, t.RequestPut); err != nil {
				return err
			}
		case *pb.RequestOp_RequestTxn:
			if err := checkPlan(b, p.sub[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkPut(b *batch, r *pb.PutRequest) error {
	if r.GetIgnoreValue() || r.GetIgnoreLease() {
		if _, ok := b.w.get(r.GetKey()); !ok {
			return fmt.Errorf("%w: %q (put with ignore_value/ignore_lease)", ErrKeyNotFound, r.GetKey())
		}
	}
	if id := r.GetLease(); id != 0 {
		if !b.w.hasLease(id) {
			return fmt.Errorf("%w: %d (put %q)", ErrLeaseNotFound, id, r.GetKey())
		}
	}
	return nil
}

// execute runs the planned ops and builds etcd's TxnResponse. Headers are
// left nil; the caller fills them.
func (b *batch) execute(p *plan) *pb.TxnResponse {
	resp := &pb.TxnResponse{Succeeded: p.succeeded, Responses: make([]*pb.ResponseOp, len(p.ops))}
	for i, op := range p.ops {
		ro := &pb.ResponseOp{}
		switch t := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := b.reader().rangeKVs(t.RequestRange)
			if err != nil {
				rr = &pb.RangeResponse{} // unreachable: checkPlan validated it
			}
			ro.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			ro.Response = &pb.ResponseOp_ResponsePut{ResponsePut: b.execPut(t.RequestPut)}
		case *pb.RequestOp_RequestDeleteRange:
			ro.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: b.execDelete(t.RequestDeleteRange)}
		case *pb.RequestOp_RequestTxn:
			ro.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: b.execute(p.sub[i])}
		}
		resp.Responses[i] = ro
	}
	return resp
}

func (b *batch) execPut(r *pb.PutRequest) *pb.PutResponse {
	value, lease := r.GetValue(), r.GetLease()
	if old, ok := b.w.get(r.GetKey()); ok {
		f := old.decode()
		if r.GetIgnoreValue() {
			value = f.value
		}
		if r.GetIgnoreLease() {
			lease = f.lease
		}
	}
	prev := b.put(r.GetKey(), value, lease)
	resp := &pb.PutResponse{}
	if r.GetPrevKv() && prev != nil {
		resp.PrevKv = prev.kv()
	}
	return resp
}

func (b *batch) execDelete(r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	prevs := b.deleteSpan(newSpan(r.GetKey(), r.GetRangeEnd()))
	resp := &pb.DeleteRangeResponse{Deleted: int64(len(prevs))}
	if r.GetPrevKv() && len(prevs) > 0 {
		resp.PrevKvs = make([]*mvccpb.KeyValue, len(prevs))
		for i, prev := range prevs {
			resp.PrevKvs[i] = prev.kv()
		}
	}
	return resp
}

// compareAll reports whether every compare holds. A compare over a range
// holds when every key in the range satisfies it; over no key at all it is
// evaluated against an empty KeyValue, except VALUE, which then fails.
func compareAll(rd reader, cs []*pb.Compare) bool {
	for _, c := range cs {
		ok, seen := true, false
		rd.scanCurrent(newSpan(c.GetKey(), c.GetRangeEnd()), func(r *record) bool {
			seen = true
			ok = compareKV(c, r.decode())
			return ok
		})
		if !seen {
			ok = c.GetTarget() != pb.Compare_VALUE && compareKV(c, fields{})
		}
		if !ok {
			return false
		}
	}
	return true
}

// compareKV is etcd's compareKV: unset targets compare against zero values
// and an unknown result operator holds.
func compareKV(c *pb.Compare, kv fields) bool {
	var res int
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		v := c.GetValue()
		if v == nil {
			v = []byte{}
		}
		res = bytes.Compare(kv.value, v)
	case pb.Compare_CREATE:
		res = cmpInt(kv.create, c.GetCreateRevision())
	case pb.Compare_MOD:
		res = cmpInt(kv.mod, c.GetModRevision())
	case pb.Compare_VERSION:
		res = cmpInt(kv.ver, c.GetVersion())
	case pb.Compare_LEASE:
		res = cmpInt(kv.lease, c.GetLease())
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return res == 0
	case pb.Compare_NOT_EQUAL:
		return res != 0
	case pb.Compare_GREATER:
		return res > 0
	case pb.Compare_LESS:
		return res < 0
	}
	return true
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
