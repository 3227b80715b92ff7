package fsm

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// HashKV compares servers at one revision even when one has applied more
// commands that write nothing (a failed compare-and-swap, a lease grant).
func TestHashKVIgnoresIndexAndLeases(t *testing.T) {
	put := func(k, v string) []byte {
		b, err := Encode(CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	failedCAS, _ := Encode(CmdTxn, &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("nope")}}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte("x")}}}},
	})
	grant, _ := Encode(CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 7, TTL: 10})

	a, b := New(), New()
	for i, cmd := range [][]byte{put("a", "1"), put("b", "2")} {
		a.Apply(uint64(i+2), cmd)
		b.Apply(uint64(i+2), cmd)
	}
	rev := a.View().Rev()
	a.Apply(4, failedCAS)
	a.Apply(5, grant)
	if a.View().Rev() != rev {
		t.Fatal("commands that write nothing must not move the revision")
	}
	ha, _ := a.View().HashKV(0)
	hb, _ := b.View().HashKV(0)
	if ha != hb {
		t.Fatal("same key-value history, different HashKV")
	}
	if a.View().Hash() == b.View().Hash() {
		t.Fatal("Hash covers the whole state and must differ here")
	}
	// A later write changes the current hash but not the hash at rev.
	a.Apply(6, put("a", "3"))
	past, err := a.View().HashKV(rev)
	if err != nil || past != hb {
		t.Fatalf("hash at a past revision: %v", err)
	}
	if cur, _ := a.View().HashKV(0); cur == hb {
		t.Fatal("a new write must change the current HashKV")
	}
	if _, err := a.View().HashKV(a.View().Rev() + 1); !errors.Is(err, ErrFutureRev) {
		t.Fatalf("future revision: %v", err)
	}
}
