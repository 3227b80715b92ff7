package fsm

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestVersionSemantics(t *testing.T) {
	s := New()
	steps := []struct {
		cmd  []byte
		want *mvccpb.KeyValue // value of "a" after the step, nil if absent
		rev  int64
	}{
		{txnCmd(t, putOp("a", "1")), kv("a", "1", 1, 1, 1, 0), 1},
		{txnCmd(t, putOp("a", "2")), kv("a", "2", 1, 2, 2, 0), 2},
		{txnCmd(t, delOp("a", "")), nil, 3},
		{txnCmd(t, delOp("a", "")), nil, 3}, // delete of nothing: no new revision
		{txnCmd(t, putOp("a", "3")), kv("a", "3", 5, 5, 1, 0), 5},
	}
	for i, st := range steps {
		res := applyOK(t, s, st.cmd)
		if res.Rev != st.rev || s.View().Rev() != st.rev {
			t.Errorf("step %d: rev %d (view %d), want %d", i, res.Rev, s.View().Rev(), st.rev)
		}
		if got := s.View().Index(); got != uint64(i+1) {
			t.Errorf("step %d: index %d, want %d", i, got, i+1)
		}
		resp := get(t, s.View(), &pb.RangeRequest{Key: []byte("a")})
		var got *mvccpb.KeyValue
		if len(resp.Kvs) > 0 {
			got = resp.Kvs[0]
		}
		if !protoEqual(got, st.want) {
			t.Errorf("step %d: a = %v, want %v", i, got, st.want)
		}
	}
}

func TestRangeSemantics(t *testing.T) {
	s := New()
	// rev 1..5: a=1, b=22, c=3, d\x00=4, then a=5 (a: create 1, mod 5, ver 2).
	for _, p := range [][2]string{{"a", "1"}, {"b", "22"}, {"c", "3"}, {"d\x00", "4"}, {"a", "5"}} {
		applyOK(t, s, txnCmd(t, putOp(p[0], p[1])))
	}
	kA, kB, kC, kD := kv("a", "5", 1, 5, 2, 0), kv("b", "22", 2, 2, 1, 0), kv("c", "3", 3, 3, 1, 0), kv("d\x00", "4", 4, 4, 1, 0)
	tests := []struct {
		name string
		req  *pb.RangeRequest
		want *pb.RangeResponse
		err  error
	}{
		{"single", &pb.RangeRequest{Key: []byte("b")}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kB}, Count: 1}, nil},
		{"missing", &pb.RangeRequest{Key: []byte("bb")}, &pb.RangeResponse{}, nil},
		{"half open", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kB}, Count: 2}, nil},
		{"from key", &pb.RangeRequest{Key: []byte("c"), RangeEnd: []byte{0}}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kC, kD}, Count: 2}, nil},
		{"everything", &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kB, kC, kD}, Count: 4}, nil},
		{"empty interval", &pb.RangeRequest{Key: []byte("c"), RangeEnd: []byte("a")}, &pb.RangeResponse{}, nil},
		{"limit", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 2}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kB}, Count: 4, More: true}, nil},
		{"limit exact", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Limit: 4}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kB, kC, kD}, Count: 4}, nil},
		{"count only", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, CountOnly: true}, &pb.RangeResponse{Count: 4}, nil},
		{"keys only", &pb.RangeRequest{Key: []byte("b"), KeysOnly: true}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kv("b", "", 2, 2, 1, 0)}, Count: 1}, nil},
		{"sort mod desc", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_MOD},
			&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kD, kC, kB}, Count: 4}, nil},
		{"sort value default ascend", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, SortTarget: pb.RangeRequest_VALUE, Limit: 3},
			&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kB, kC, kD}, Count: 4, More: true}, nil},
		{"sort key desc", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), SortOrder: pb.RangeRequest_DESCEND},
			&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kB, kA}, Count: 2}, nil},
		{"min mod", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, MinModRevision: 4}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kD}, Count: 4}, nil},
		{"max create", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, MaxCreateRevision: 2}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA, kB}, Count: 4}, nil},
		{"at past rev", &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 2},
			&pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kv("a", "1", 1, 1, 1, 0), kB}, Count: 2}, nil},
		{"at current rev", &pb.RangeRequest{Key: []byte("a"), Revision: 5}, &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{kA}, Count: 1}, nil},
		{"future", &pb.RangeRequest{Key: []byte("a"), Revision: 6}, nil, ErrFutureRev},
		{"bad sort", &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}, nil, ErrInvalidSortOption},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.View().Range(tc.req)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if tc.err == nil && !protoEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
		})
	}
}

func cmpOp(key string, target pb.Compare_CompareTarget, result pb.Compare_CompareResult, v int64, val string) *pb.Compare {
	c := &pb.Compare{Key: []byte(key), Target: target, Result: result}
	switch target {
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: []byte(val)}
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: v}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: v}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: v}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: v}
	}
	return c
}

func TestTxnCompares(t *testing.T) {
	s := New()
	applyOK(t, s, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 7, TTL: 10})) // index 1
	applyOK(t, s, txnCmd(t, putOp("a", "x")))                                          // 2
	applyOK(t, s, txnCmd(t, putReqOp(&pb.PutRequest{Key: []byte("b"), Value: []byte("y"), Lease: 7})))
	applyOK(t, s, txnCmd(t, putOp("a", "z"))) // 4: a create 2, mod 4, ver 2
	tests := []struct {
		name string
		cmps []*pb.Compare
		want bool
	}{
		{"value equal", []*pb.Compare{cmpOp("a", pb.Compare_VALUE, pb.Compare_EQUAL, 0, "z")}, true},
		{"value less", []*pb.Compare{cmpOp("a", pb.Compare_VALUE, pb.Compare_LESS, 0, "zz")}, true},
		{"value missing key fails", []*pb.Compare{cmpOp("q", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, 0, "z")}, false},
		{"version missing key is 0", []*pb.Compare{cmpOp("q", pb.Compare_VERSION, pb.Compare_EQUAL, 0, "")}, true},
		{"create missing key is 0", []*pb.Compare{cmpOp("q", pb.Compare_CREATE, pb.Compare_EQUAL, 0, "")}, true},
		{"version greater", []*pb.Compare{cmpOp("a", pb.Compare_VERSION, pb.Compare_GREATER, 1, "")}, true},
		{"create equal", []*pb.Compare{cmpOp("a", pb.Compare_CREATE, pb.Compare_EQUAL, 2, "")}, true},
		{"mod not equal", []*pb.Compare{cmpOp("a", pb.Compare_MOD, pb.Compare_NOT_EQUAL, 4, "")}, false},
		{"lease", []*pb.Compare{cmpOp("b", pb.Compare_LEASE, pb.Compare_EQUAL, 7, "")}, true},
		{"all must hold", []*pb.Compare{cmpOp("a", pb.Compare_MOD, pb.Compare_EQUAL, 4, ""), cmpOp("b", pb.Compare_MOD, pb.Compare_EQUAL, 4, "")}, false},
		{"range all keys", []*pb.Compare{{Key: []byte("a"), RangeEnd: []byte{0}, Target: pb.Compare_MOD, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_ModRevision{ModRevision: 2}}}, true},
		{"range one key fails", []*pb.Compare{{Key: []byte("a"), RangeEnd: []byte("c"), Target: pb.Compare_MOD, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_ModRevision{ModRevision: 3}}}, false},
		{"empty range compares zero", []*pb.Compare{{Key: []byte("m"), RangeEnd: []byte("n"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.View()
			res := s.Apply(before.Index()+1, mustEncode(t, CmdTxn, &pb.TxnRequest{
				Compare: tc.cmps,
				Failure: []*pb.RequestOp{rangeOp(&pb.RangeRequest{Key: []byte("a"), CountOnly: true})},
			}))
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if res.Txn.Succeeded != tc.want {
				t.Errorf("succeeded = %v, want %v", res.Txn.Succeeded, tc.want)
			}
			wantResps := 0
			if !tc.want {
				wantResps = 1
			}
			if len(res.Txn.Responses) != wantResps {
				t.Errorf("%d responses, want %d", len(res.Txn.Responses), wantResps)
			}
			if res.Rev != before.Rev() || s.View().Rev() != before.Rev() {
				t.Errorf("read-only txn moved revision %d -> %d", before.Rev(), res.Rev)
			}
		})
	}
}

func TestTxnResponses(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1"), putOp("b", "2"), putOp("c", "3"))) // index 1
	res := applyOK(t, s, mustEncode(t, CmdTxn, &pb.TxnRequest{
		Compare: []*pb.Compare{cmpOp("a", pb.Compare_MOD, pb.Compare_EQUAL, 1, "")},
		Success: []*pb.RequestOp{
			putReqOp(&pb.PutRequest{Key: []byte("a"), Value: []byte("A"), PrevKv: true}),
			rangeOp(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}), // sees the put above
			{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("d"), PrevKv: true}}},
			rangeOp(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 1}), // past read is pre-txn
			txnOp(&pb.TxnRequest{
				// Nested compares are decided before the txn writes: b still exists.
				Compare: []*pb.Compare{cmpOp("b", pb.Compare_VERSION, pb.Compare_EQUAL, 1, "")},
				Success: []*pb.RequestOp{putOp("z", "nested")},
				Failure: []*pb.RequestOp{putOp("y", "else")},
			}),
		},
	}))
	a2 := kv("a", "A", 1, 2, 2, 0)
	want := &pb.TxnResponse{Succeeded: true, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{PrevKv: kv("a", "1", 1, 1, 1, 0)}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Count: 3, Kvs: []*mvccpb.KeyValue{a2, kv("b", "2", 1, 1, 1, 0), kv("c", "3", 1, 1, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Deleted: 2, PrevKvs: []*mvccpb.KeyValue{kv("b", "2", 1, 1, 1, 0), kv("c", "3", 1, 1, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Count: 3, Kvs: []*mvccpb.KeyValue{kv("a", "1", 1, 1, 1, 0), kv("b", "2", 1, 1, 1, 0), kv("c", "3", 1, 1, 1, 0)}}}},
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Succeeded: true, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}},
		}}}},
	}}
	if !protoEqual(res.Txn, want) {
		t.Errorf("txn response\n got %v\nwant %v", res.Txn, want)
	}
	var evs []string
	if err := s.View().Events(2, []byte{0}, []byte{0}, func(rev int64, ev Event) bool {
		evs = append(evs, ev.Type.String()+" "+string(ev.Kv.Key))
		if rev != 2 || ev.Kv.ModRevision != 2 {
			t.Errorf("event %v at rev %d", ev, rev)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := len(evs), 4; got != want || evs[0] != "PUT a" || evs[1] != "DELETE b" || evs[2] != "DELETE c" || evs[3] != "PUT z" {
		t.Errorf("events %q, want PUT a, DELETE b, DELETE c, PUT z", evs)
	}
}

func TestTxnErrors(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1"))) // 1
	applyOK(t, s, txnCmd(t, putOp("b", "1"))) // 2
	applyOK(t, s, mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: 2}))
	tests := []struct {
		name string
		txn  *pb.TxnRequest
		err  error
	}{
		{"put put same key", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), putOp("k", "2")}}, ErrDuplicateKey},
		{"put covered by delete range", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), delOp("a", "z")}}, ErrDuplicateKey},
		{"put and delete same key", &pb.TxnRequest{Success: []*pb.RequestOp{delOp("k", ""), putOp("k", "1")}}, ErrDuplicateKey},
		{"nested put vs outer put", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "2")}})}}, ErrDuplicateKey},
		{"nested delete vs outer put", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{delOp("k", "")}})}}, ErrDuplicateKey},
		{"then and else may share a key", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1")}, Failure: []*pb.RequestOp{putOp("k", "2")}})}}, nil},
		{"top then and else are separate", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1")}, Failure: []*pb.RequestOp{putOp("k", "2")}}, nil},
		{"delete from key like etcd is not checked", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), delOp("a", "\x00")}}, nil},
		{"missing lease", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("k"), Lease: 9})}}, ErrLeaseNotFound},
		{"ignore value on missing key", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true})}}, ErrKeyNotFound},
		{"ignore lease on missing key", &pb.TxnRequest{Success: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("k"), IgnoreLease: true})}}, ErrKeyNotFound},
		{"range compacted", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), rangeOp(&pb.RangeRequest{Key: []byte("a"), Revision: 1})}}, ErrCompacted},
		{"range future", &pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "1"), rangeOp(&pb.RangeRequest{Key: []byte("a"), Revision: 99})}}, ErrFutureRev},
		{"error on untaken branch is ignored", &pb.TxnRequest{Failure: []*pb.RequestOp{putReqOp(&pb.PutRequest{Key: []byte("k"), Lease: 9})}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.View()
			res := s.Apply(before.Index()+1, mustEncode(t, CmdTxn, tc.txn))
			if !errors.Is(res.Err, tc.err) {
				t.Fatalf("err = %v, want %v", res.Err, tc.err)
			}
			if tc.err != nil {
				if res.Txn != nil || s.View().Rev() != before.Rev() || s.View().Index() != before.Index()+1 {
					t.Errorf("failed txn: resp %v, rev %d -> %d, index %d -> %d", res.Txn, before.Rev(), s.View().Rev(), before.Index(), s.View().Index())
				}
				if _, err := s.View().Range(&pb.RangeRequest{Key: []byte("k")}); err != nil {
					t.Fatal(err)
				}
				if r := get(t, s.View(), &pb.RangeRequest{Key: []byte("k")}); r.Count != 0 {
					t.Errorf("failed txn wrote k: %v", r)
				}
			}
			// Undo any write so the cases stay independent.
			applyOK(t, s, txnCmd(t, delOp("k", "")))
		})
	}
}

func TestPutFlags(t *testing.T) {
	s := New()
	applyOK(t, s, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 1, TTL: 5}))
	applyOK(t, s, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 2, TTL: 5}))
	applyOK(t, s, txnCmd(t, putReqOp(&pb.PutRequest{Key: []byte("k"), Value: []byte("v1"), Lease: 1}))) // 3
	applyOK(t, s, txnCmd(t, putReqOp(&pb.PutRequest{Key: []byte("k"), Value: []byte("v2"), IgnoreLease: true})))
	if r := get(t, s.View(), &pb.RangeRequest{Key: []byte("k")}); !protoEqual(r.Kvs[0], kv("k", "v2", 3, 4, 2, 1)) {
		t.Errorf("ignore_lease: %v", r.Kvs[0])
	}
	applyOK(t, s, txnCmd(t, putReqOp(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 2})))
	if r := get(t, s.View(), &pb.RangeRequest{Key: []byte("k")}); !protoEqual(r.Kvs[0], kv("k", "v2", 3, 5, 3, 2)) {
		t.Errorf("ignore_value: %v", r.Kvs[0])
	}
	if _, keys, _ := s.View().Lease(1); len(keys) != 0 {
		t.Errorf("lease 1 still has %q after the key moved", keys)
	}
	if _, keys, _ := s.View().Lease(2); len(keys) != 1 || string(keys[0]) != "k" {
		t.Errorf("lease 2 keys %q, want [k]", keys)
	}
	applyOK(t, s, txnCmd(t, putOp("k", "v3"))) // lease 0 detaches
	if _, keys, _ := s.View().Lease(2); len(keys) != 0 {
		t.Errorf("lease 2 keys %q after put without lease", keys)
	}
}

func TestLeases(t *testing.T) {
	s := New()
	grant := func(id, ttl int64) []byte {
		return mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
	}
	revoke := func(id int64) []byte { return mustEncode(t, CmdLeaseRevoke, &pb.LeaseRevokeRequest{ID: id}) }
	expire := func(id int64) []byte { return mustEncode(t, CmdLeaseExpire, &pb.LeaseRevokeRequest{ID: id}) }
	if res := applyOK(t, s, grant(5, 30)); !protoEqual(res.LeaseGrant, &pb.LeaseGrantResponse{ID: 5, TTL: 30}) || res.Rev != 1 {
		t.Errorf("grant: %v rev %d", res.LeaseGrant, res.Rev)
	}
	for _, k := range []string{"c", "a", "b"} {
		applyOK(t, s, txnCmd(t, putReqOp(&pb.PutRequest{Key: []byte(k), Value: []byte("v"), Lease: 5})))
	}
	applyOK(t, s, txnCmd(t, putOp("x", "no lease")))
	tests := []struct {
		name    string
		cmd     []byte
		err     error
		wantRev int64 // 0: unchanged
	}{
		{"grant existing", grant(5, 1), ErrLeaseExists, 0},
		{"grant zero id", grant(0, 1), ErrBadCommand, 0},
		{"revoke missing", revoke(6), ErrLeaseNotFound, 0},
		{"expire missing", expire(6), nil, 0},
		{"revoke deletes keys", revoke(5), nil, 10},
		{"revoke again", revoke(5), ErrLeaseNotFound, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.View()
			res := s.Apply(before.Index()+1, tc.cmd)
			if !errors.Is(res.Err, tc.err) {
				t.Fatalf("err = %v, want %v", res.Err, tc.err)
			}
			want := tc.wantRev
			if want == 0 {
				want = before.Rev()
			}
			if s.View().Rev() != want || res.Rev != want {
				t.Errorf("rev %d (result %d), want %d", s.View().Rev(), res.Rev, want)
			}
		})
	}
	var got []string
	if err := s.View().Events(9, []byte{0}, []byte{0}, func(rev int64, ev Event) bool {
		got = append(got, ev.Type.String()+" "+string(ev.Kv.Key))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "DELETE a" || got[1] != "DELETE b" || got[2] != "DELETE c" {
		t.Errorf("revoke events %q, want DELETE a, b, c in key order", got)
	}
	if r := get(t, s.View(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}); r.Count != 1 {
		t.Errorf("after revoke %d keys, want only x", r.Count)
	}
	if _, _, ok := s.View().Lease(5); ok || len(s.View().Leases()) != 0 {
		t.Errorf("lease 5 still listed: %v", s.View().Leases())
	}
}

func TestCompaction(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1"))) // 1
	applyOK(t, s, txnCmd(t, putOp("b", "1"))) // 2
	applyOK(t, s, txnCmd(t, putOp("a", "2"))) // 3
	applyOK(t, s, txnCmd(t, delOp("b", "")))  // 4
	applyOK(t, s, txnCmd(t, putOp("c", "1"))) // 5
	compact := func(rev int64) []byte { return mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: rev}) }
	steps := []struct {
		name string
		cmd  []byte
		err  error
	}{
		{"zero", compact(0), ErrCompacted},
		{"future", compact(6), ErrFutureRev},
		{"to 4", compact(4), nil},
		{"again", compact(4), ErrCompacted},
		{"older", compact(3), ErrCompacted},
	}
	for _, st := range steps {
		res := s.Apply(s.View().Index()+1, st.cmd)
		if !errors.Is(res.Err, st.err) {
			t.Errorf("%s: err = %v, want %v", st.name, res.Err, st.err)
		}
	}
	v := s.View()
	if v.CompactRev() != 4 || v.Rev() != 5 {
		t.Fatalf("compactRev %d rev %d, want 4, 5", v.CompactRev(), v.Rev())
	}
	if _, err := v.Range(&pb.RangeRequest{Key: []byte("a"), Revision: 3}); !errors.Is(err, ErrCompacted) {
		t.Errorf("read at 3: %v, want ErrCompacted", err)
	}
	r := get(t, v, &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 4})
	if !protoEqual(r, &pb.RangeResponse{Count: 1, Kvs: []*mvccpb.KeyValue{kv("a", "2", 1, 3, 2, 0)}}) {
		t.Errorf("read at compact rev: %v", r)
	}
	// a@1 dropped, a@3 kept, b's tombstone at 4 dropped with b's history.
	if n := v.versions.Len(); n != 2 {
		t.Errorf("%d versions retained, want 2 (a@3, c@5)", n)
	}
	if err := v.Events(3, []byte("a"), nil, func(int64, Event) bool { return true }); !errors.Is(err, ErrCompacted) {
		t.Errorf("events from 3: %v, want ErrCompacted", err)
	}
	var revs []int64
	if err := v.Events(4, []byte{0}, []byte{0}, func(rev int64, _ Event) bool { revs = append(revs, rev); return true }); err != nil {
		t.Fatal(err)
	}
	if len(revs) != 2 || revs[0] != 4 || revs[1] != 5 {
		t.Errorf("events from 4 at revs %v, want [4 5]", revs)
	}
}

func TestEventsFilter(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1"), putOp("ab", "1"), putOp("b", "1"))) // 1
	applyOK(t, s, txnCmd(t, delOp("a", "b")))                                    // 2
	tests := []struct {
		name     string
		from     int64
		key, end string
		want     []string
	}{
		{"one key", 1, "a", "", []string{"1 PUT a", "2 DELETE a"}},
		{"prefix range", 0, "a", "b", []string{"1 PUT a", "1 PUT ab", "2 DELETE a", "2 DELETE ab"}},
		{"from key", 2, "ab", "\x00", []string{"2 DELETE ab"}},
		{"none", 3, "a", "\x00", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var end []byte
			if tc.end != "" {
				end = []byte(tc.end)
			}
			var got []string
			err := s.View().Events(tc.from, []byte(tc.key), end, func(rev int64, ev Event) bool {
				got = append(got, string(rune('0'+rev))+" "+ev.Type.String()+" "+string(ev.Kv.Key))
				if ev.Type == mvccpb.DELETE && (ev.Kv.ModRevision != rev || ev.PrevKv == nil || ev.Kv.Value != nil) {
					t.Errorf("delete event %v", ev)
				}
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}

func TestBadCommands(t *testing.T) {
	tests := []struct {
		name string
		cmd  []byte
		err  error
	}{
		{"empty", nil, ErrBadCommand},
		{"unknown type", []byte{99, 1, 2}, ErrUnknownCommand},
		{"zero type", []byte{0}, ErrUnknownCommand},
		{"garbage body", []byte{CmdTxn, 0xff, 0xff, 0xff}, ErrBadCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			res := s.Apply(1, tc.cmd)
			if !errors.Is(res.Err, tc.err) {
				t.Fatalf("err = %v, want %v", res.Err, tc.err)
			}
			if s.View().Index() != 1 || s.View().Rev() != 1 {
				t.Errorf("index %d rev %d after bad command, want 1, 1", s.View().Index(), s.View().Rev())
			}
		})
	}
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1")))
	if res := s.Apply(1, txnCmd(t, putOp("a", "2"))); !errors.Is(res.Err, ErrStaleIndex) {
		t.Errorf("replayed index: %v, want ErrStaleIndex", res.Err)
	}
	if _, err := Encode(CmdTxn, &pb.CompactionRequest{}); !errors.Is(err, ErrBadCommand) {
		t.Errorf("Encode with wrong message: %v", err)
	}
	if _, err := Encode(42, &pb.CompactionRequest{}); !errors.Is(err, ErrUnknownCommand) {
		t.Errorf("Encode with unknown type: %v", err)
	}
}

func TestNextClosesOnApplyAndRestore(t *testing.T) {
	s := New()
	v0 := s.View()
	ch := s.View().Next()
	select {
	case <-ch:
		t.Fatal("Next closed before any apply")
	default:
	}
	s.Apply(1, []byte{77}) // even a refused command consumes its index
	select {
	case <-ch:
	default:
		t.Fatal("Next not closed by Apply")
	}
	select {
	case <-v0.Next():
	default:
		t.Fatal("old view's Next not closed")
	}
	if v0.Index() != 0 || s.View().Index() != 1 {
		t.Errorf("old view changed: %d; new view %d", v0.Index(), s.View().Index())
	}
}
