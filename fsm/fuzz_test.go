package fsm

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fuzzBase builds a store with keys, a lease and some history, so fuzzed
// commands have something to compare, delete and revoke.
func fuzzBase(t testing.TB) *Store {
	s := New()
	applyOK(t, s, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 1, TTL: 10}))
	applyOK(t, s, txnCmd(t, putOp("a", "1"), putOp("a\x00", "2"), putReqOp(&pb.PutRequest{Key: []byte("b"), Value: []byte("3"), Lease: 1})))
	applyOK(t, s, txnCmd(t, putOp("a", "4")))
	applyOK(t, s, txnCmd(t, delOp("a\x00", "")))
	return s
}

// FuzzApply checks that no input makes Apply panic, and that whatever it
// did survives a snapshot round trip.
func FuzzApply(f *testing.F) {
	for _, cmd := range randomCommands(f, 1, 40) {
		f.Add(cmd)
	}
	f.Add([]byte{})
	f.Add([]byte{CmdTxn})
	f.Add([]byte{CmdCompact, 0x08, 0x02})
	f.Add([]byte{200, 1, 2, 3})
	f.Add(mustEncode(f, CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{{}, rangeOp(&pb.RangeRequest{Key: []byte("a"), SortTarget: 7})}}))
	f.Fuzz(func(t *testing.T, cmd []byte) {
		s := fuzzBase(t)
		s.Apply(s.View().Index()+1, cmd)
		v := s.View()
		if _, err := v.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); err != nil {
			t.Fatalf("full range after fuzzed command: %v", err)
		}
		var buf bytes.Buffer
		if err := v.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		r := New()
		if err := r.Restore(&buf); err != nil {
			t.Fatal(err)
		}
		if r.View().Hash() != v.Hash() {
			t.Fatal("snapshot round trip changed the hash")
		}
	})
}
