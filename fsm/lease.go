package fsm

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// applyLeaseGrant records a lease whose ID and TTL the leader chose.
func applyLeaseGrant(st state, r *pb.LeaseGrantRequest) (state, Result) {
	id := r.GetID()
	if id <= 0 {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: lease grant with ID %d (the leader must choose a positive ID)", ErrBadCommand, id)}
	}
	if _, ok := st.leases.Get(idKey(id)); ok {
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: %d", ErrLeaseExists, id)}
	}
	st.leases, _, _ = st.leases.Insert(idKey(id), Lease{ID: id, TTL: r.GetTTL()})
	return st, Result{Rev: st.rev, LeaseGrant: &pb.LeaseGrantResponse{ID: id, TTL: r.GetTTL()}}
}

// applyLeaseRevoke removes a lease and deletes its keys, in key order, at
// this command's revision. An expiry of a lease that is already gone is not
// an error (a client may have revoked it first).
func applyLeaseRevoke(st state, r *pb.LeaseRevokeRequest, expire bool) (state, Result) {
	id := r.GetID()
	if _, ok := st.leases.Get(idKey(id)); !ok {
		if expire {
			return st, Result{Rev: st.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
		}
		return st, Result{Rev: st.rev, Err: fmt.Errorf("%w: %d", ErrLeaseNotFound, id)}
	}
	b := newBatch(st)
	for _, k := range attachedKeys(st, id) {
		b.del(k)
	}
	next := b.commit()
	next.leases, _, _ = next.leases.Delete(idKey(id))
	return next, Result{Rev: next.rev, LeaseRevoke: &pb.LeaseRevokeResponse{}}
}

// attachedKeys lists the keys attached to lease id in key order.
func attachedKeys(st state, id int64) [][]byte {
	var keys [][]byte
	prefix := idKey(id)
	it := st.leaseKeys.Root().Iterator()
	it.SeekPrefix(prefix)
	for k, _, ok := it.Next(); ok; k, _, ok = it.Next() {
		keys = append(keys, k[len(prefix):])
	}
	return keys
}
