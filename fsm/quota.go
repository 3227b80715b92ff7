package fsm

import (
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The storage quota works as etcd's does. The store's size (View.Size) is a
// pure function of its retained versions and leases, so it is the same on
// every server at the same index. A server about to propose a write that
// would take the size past its quota proposes CmdAlarm (ACTIVATE NOSPACE)
// instead; the alarm is replicated state, and while it is raised Apply
// refuses every command that could grow the store (a txn with a put on
// either branch, a lease grant) with ErrNoSpace. Reads, deletes, compaction
// and lease revocation still apply. The refusal is decided here, inside
// Apply, from the replicated alarm table and never from a server's own
// quota flag, so servers with different quotas (or different memory) still
// make the same decision at every index. An operator clears the alarm with
// CmdAlarm (DEACTIVATE) after freeing space (etcdctl alarm disarm).

// Overheads approximate what an entry costs in memory beyond its bytes: the
// KeyValue struct, its slots in the trees and in the event log.
const (
	versionOverhead = 128
	leaseOverhead   = 64
)

// VersionCost is the size a put of key=value adds to the store; a server
// compares View.Size()+VersionCost against its quota before proposing.
func VersionCost(key, value []byte) int64 {
	return int64(len(key)+len(value)) + versionOverhead
}

// LeaseCost is the size a lease grant adds to the store.
const LeaseCost = leaseOverhead

// Alarm is a raised alarm: which member raised it, and its type.
type Alarm struct {
	MemberID uint64
	Type     pb.AlarmType
}

// Size is the store's accounted size in bytes: every retained version
// (live values, history and tombstones) and every lease. Compaction lowers
// it; it is what the quota is checked against.
func (v *View) Size() int64 { return v.size }

// Alarms lists the raised alarms ordered by member and type.
func (v *View) Alarms() []Alarm { return slices.Clone(v.alarms) }

// NoSpace reports whether a NOSPACE alarm is raised.
func (v *View) NoSpace() bool { return hasAlarm(v.alarms, pb.AlarmType_NOSPACE) }

func hasAlarm(alarms []Alarm, t pb.AlarmType) bool {
	for _, a := range alarms {
		if a.Type == t {
			return true
		}
	}
	return false
}

func alarmLess(a, b Alarm) int {
	switch {
	case a.MemberID != b.MemberID:
		if a.MemberID < b.MemberID {
			return -1
		}
		return 1
	case a.Type != b.Type:
		return int(a.Type) - int(b.Type)
	}
	return 0
}

// setVersion stores r in the versions tree and accounts for its size.
func (w *writer) setVersion(r *record) {
	if old, replaced := w.versions.mut().Set(r); replaced {
		w.size -= old.decode().size()
	}
	w.size += r.decode().size()
}

// deleteVersion removes r from the versions tree and its size.
func (w *writer) deleteVersion(r *record) {
	if old, ok := w.versions.mut().Delete(r); ok {
		w.size -= old.decode().size()
	}
}

// recomputeSize derives the size from the versions and leases (after a
// restore), the same sum Apply keeps incrementally.
func (w *writer) recomputeSize() {
	w.size = int64(w.leases.w.Len()) * leaseOverhead
	w.versions.w.Scan(func(r *record) bool {
		w.size += r.decode().size()
		return true
	})
}

// applyAlarm raises or clears an alarm. Only NOSPACE is defined: Keelson
// has no database file that could be corrupt.
func (w *writer) applyAlarm(r *pb.AlarmRequest) Result {
	if r.GetAlarm() != pb.AlarmType_NOSPACE {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: alarm type %s (only NOSPACE is defined)", ErrBadCommand, r.GetAlarm())}
	}
	a := Alarm{MemberID: r.GetMemberID(), Type: r.GetAlarm()}
	resp := &pb.AlarmResponse{}
	i, found := slices.BinarySearchFunc(w.alarms, a, alarmLess)
	switch r.GetAction() {
	case pb.AlarmRequest_ACTIVATE:
		if !found {
			// A new slice: published views share the old one.
			w.alarms = slices.Insert(slices.Clone(w.alarms), i, a)
		}
		resp.Alarms = []*pb.AlarmMember{{MemberID: a.MemberID, Alarm: a.Type}}
	case pb.AlarmRequest_DEACTIVATE:
		if found {
			w.alarms = slices.Delete(slices.Clone(w.alarms), i, i+1)
			resp.Alarms = []*pb.AlarmMember{{MemberID: a.MemberID, Alarm: a.Type}}
		}
	default:
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: alarm action %s is not a command", ErrBadCommand, r.GetAction())}
	}
	return Result{Rev: w.rev, Alarm: resp}
}

// txnHasPut reports whether either branch of r (or of a nested txn) puts,
// which is what etcd refuses under NOSPACE whatever the compares decide.
func txnHasPut(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			switch t := op.GetRequest().(type) {
			case *pb.RequestOp_RequestPut:
				return true
			case *pb.RequestOp_RequestTxn:
				if txnHasPut(t.RequestTxn) {
					return true
				}
			}
		}
	}
	return false
}

// TxnCost is what a txn's puts add to the store at most (both branches),
// etcd's quota cost of a txn.
func TxnCost(r *pb.TxnRequest) int64 {
	var n int64
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			switch t := op.GetRequest().(type) {
			case *pb.RequestOp_RequestPut:
				n += VersionCost(t.RequestPut.GetKey(), t.RequestPut.GetValue())
			case *pb.RequestOp_RequestTxn:
				n += TxnCost(t.RequestTxn)
			}
		}
	}
	return n
}
