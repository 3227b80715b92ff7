package fsm

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// Builders for requests, so tests read like the etcd calls they model.

func putOp(key, val string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: []byte(val)}}}
}

func putReqOp(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func delOp(key, end string) *pb.RequestOp {
	r := &pb.DeleteRangeRequest{Key: []byte(key)}
	if end != "" {
		r.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func rangeOp(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func txnOp(t *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: t}}
}

func mustEncode(t testing.TB, typ byte, msg proto.Message) []byte {
	t.Helper()
	cmd, err := Encode(typ, msg)
	if err != nil {
		t.Fatalf("Encode(%d, %T): %v", typ, msg, err)
	}
	return cmd
}

func txnCmd(t testing.TB, ops ...*pb.RequestOp) []byte {
	return mustEncode(t, CmdTxn, &pb.TxnRequest{Success: ops})
}

// applyOK applies cmd at the next index and fails the test on an error.
func applyOK(t testing.TB, s *Store, cmd []byte) Result {
	t.Helper()
	res := s.Apply(s.View().Index()+1, cmd)
	if res.Err != nil {
		t.Fatalf("Apply at %d: %v", s.View().Index(), res.Err)
	}
	return res
}

func kv(key, val string, create, mod, ver, lease int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver, Lease: lease}
}

func get(t testing.TB, v *View, r *pb.RangeRequest) *pb.RangeResponse {
	t.Helper()
	resp, err := v.Range(r)
	if err != nil {
		t.Fatalf("Range(%v): %v", r, err)
	}
	return resp
}

func protoEqual(a, b proto.Message) bool { return proto.Equal(a, b) }
