package fsm

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// checkDuplicates refuses a txn that writes one key twice on a path, with
// the rules of etcd's checkIntervals: within one branch a key may be put at
// most once and not put when a delete of the same level (or of a nested
// txn) covers it. Then and else of a nested txn may put the same key, since
// only one runs. Each of the top-level branches is checked on its own.
func checkDuplicates(r *pb.TxnRequest) error {
	if atMostOneWrite(r.GetSuccess()) && atMostOneWrite(r.GetFailure()) {
		return nil // the common case (one put or delete) cannot repeat a key
	}
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkIntervals(r.GetFailure())
	return err
}

// atMostOneWrite reports whether a branch has no nested txn and at most one
// put or delete, so that checkIntervals could not find a duplicate in it.
func atMostOneWrite(reqs []*pb.RequestOp) bool {
	writes := 0
	for _, op := range reqs {
		switch op.GetRequest().(type) {
		case *pb.RequestOp_RequestTxn:
			return false
		case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
			writes++
		}
	}
	return writes <= 1
}

// interval is a delete's key interval in etcd's adt terms: [begin, end),
// where a single-key delete is [key, key+"\x00"). Like etcd, a range_end
// of "\x00" is taken literally, so it covers no key here.
type interval struct{ begin, end []byte }

func (iv interval) hasPoint(k []byte) bool {
	return bytes.Compare(iv.begin, k) <= 0 && bytes.Compare(k, iv.end) < 0
}

type intervals []interval

func (ivs intervals) hasPoint(k []byte) bool {
	for _, iv := range ivs {
		if iv.hasPoint(k) {
			return true
		}
	}
	return false
}

func dupErr(k string) error {
	return fmt.Errorf("%w: %q", ErrDuplicateKey, k)
}

func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, intervals, error) {
	var dels intervals
	// This level's deletes first, to check the puts of nested txns.
	for _, op := range reqs {
		t, ok := op.GetRequest().(*pb.RequestOp_RequestDeleteRange)
		if !ok || t.RequestDeleteRange == nil {
			continue
		}
		d := t.RequestDeleteRange
		if len(d.GetRangeEnd()) != 0 {
			dels = append(dels, interval{d.GetKey(), d.GetRangeEnd()})
		} else {
			dels = append(dels, interval{d.GetKey(), append(bytes.Clone(d.GetKey()), 0)})
		}
	}
	puts := map[string]struct{}{}
	for _, op := range reqs {
		t, ok := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok || t.RequestTxn == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(t.RequestTxn.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkIntervals(t.RequestTxn.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		// Sorted, so the key named in the error is the same on every server.
		for _, k := range sortedKeys(putsThen) {
			if _, dup := puts[k]; dup || dels.hasPoint([]byte(k)) {
				return nil, nil, dupErr(k)
			}
			puts[k] = struct{}{}
		}
		for _, k := range sortedKeys(putsElse) {
			if _, dup := puts[k]; dup {
				if _, safe := putsThen[k]; !safe {
					return nil, nil, dupErr(k)
				}
			}
			if dels.hasPoint([]byte(k)) {
				return nil, nil, dupErr(k)
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, delsThen...)
		dels = append(dels, delsElse...)
	}
	for _, op := range reqs {
		t, ok := op.GetRequest().(*pb.RequestOp_RequestPut)
		if !ok || t.RequestPut == nil {
			continue
		}
		k := string(t.RequestPut.GetKey())
		if _, dup := puts[k]; dup || dels.hasPoint([]byte(k)) {
			return nil, nil, dupErr(k)
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
