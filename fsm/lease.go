package fsm

import (
	"fmt"

	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// applyLeaseGrant records a lease whose ID and TTL the leader chose.
func (w *writer) applyLeaseGrant(r *pb.LeaseGrantRequest) Result {
	id := r.GetID()
	if id <= 0 {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: lease grant with ID %d (the leader must choose a positive ID)", ErrBadCommand, id)}
	}
	if w.hasLease(id) {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: %d", ErrLeaseExists, id)}
	}
	if hasAlarm(w.alarms, pb.AlarmType_NOSPACE) {
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: lease grant %d refused while the NOSPACE alarm is raised", ErrNoSpace, id)}
	}
	w.leases.mut().Set(Lease{ID: id, TTL: r.GetTTL()})
	w.size += leaseOverhead
	return Result{Rev: w.rev, LeaseGrant: &pb.LeaseGrantResponse{ID: id, TTL: r.GetTTL()}}
}

// applyLeaseRevoke removes a lease and deletes its keys, in key order, at
// this command's revision. An expiry of a lease that is already gone is not
// an error (a client may have revoked it first).
func (w *writer) applyLeaseRevoke(r *pb.LeaseRevokeRequest, expire bool) Result {
	id := r.GetID()
	if !w.hasLease(id) {
		if expire {
			return Result{Rev: w.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
		}
		return Result{Rev: w.rev, Err: fmt.Errorf("%w: %d", ErrLeaseNotFound, id)}
	}
	b := newBatch(w)
	for _, k := range attachedKeys(w.leaseKeys.w, id) {
		b.del(k)
	}
	b.commit()
	w.leases.mut().Delete(Lease{ID: id})
	w.size -= leaseOverhead
	return Result{Rev: w.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
}

// attachedKeys lists the keys attached to lease id in key order.
func attachedKeys(t *btree.BTreeG[leaseKey], id int64) [][]byte {
	var keys [][]byte
	t.Ascend(leaseKey{id: id}, func(lk leaseKey) bool {
		if lk.id != id {
			return false
		}
		keys = append(keys, lk.key)
		return true
	})
	return keys
}
