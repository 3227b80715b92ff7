package fsm

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden.* from this build (only when the format is meant to change)")

// goldenCommands is a fixed history touching every part of the state:
// puts with and without leases, overwrites, deletes of single keys and
// ranges, a txn on both branches, a compaction, lease revocation and an
// alarm. It is spelled out, not generated, so that it never changes.
func goldenCommands(t testing.TB) [][]byte {
	var cmds [][]byte
	txn := func(ops ...*pb.RequestOp) { cmds = append(cmds, txnCmd(t, ops...)) }
	cmds = append(cmds, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 7, TTL: 10}))
	for i := range 40 {
		key := fmt.Sprintf("/k/%02d\x00x", i%13)
		put := &pb.PutRequest{Key: []byte(key), Value: bytes.Repeat([]byte{byte('a' + i%26)}, i*7)}
		if i%5 == 0 {
			put.Lease = 7
		}
		txn(putReqOp(put))
		switch {
		case i%7 == 6:
			txn(delOp(fmt.Sprintf("/k/%02d", i%13), ""))
			txn(delOp("/k/0", "/k/1"))
		case i%9 == 8:
			txn(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte(key), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 1}}},
				Success: []*pb.RequestOp{putOp(key+"/then", "t")},
				Failure: []*pb.RequestOp{putOp(key+"/else", "e")},
			}}})
		}
		if i == 25 {
			cmds = append(cmds, mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: int64(len(cmds) - 10)}))
		}
	}
	cmds = append(cmds, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 9, TTL: 60}))
	cmds = append(cmds, mustEncode(t, CmdLeaseRevoke, &pb.LeaseRevokeRequest{ID: 7}))
	cmds = append(cmds, mustEncode(t, CmdAlarm, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: 3, Alarm: pb.AlarmType_NOSPACE}))
	return cmds
}

// TestGoldenSnapshot pins the snapshot format and Hash to what earlier
// builds wrote: servers of two builds restore each other's snapshots and
// compare state hashes, so how the store holds its state in memory must
// not show in either. testdata/golden.snap was written by the build before
// versions became records (fsm/record.go).
func TestGoldenSnapshot(t *testing.T) {
	s := New()
	for i, cmd := range goldenCommands(t) {
		if res := s.Apply(uint64(i+2), cmd); res.Err != nil {
			t.Fatalf("command %d: %v", i, res.Err)
		}
	}
	snap, hash := snapshotOf(t, s.View()), s.View().Hash()
	snapPath, hashPath := filepath.Join("testdata", "golden.snap"), filepath.Join("testdata", "golden.hash")
	if *updateGolden {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(snapPath, snap, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hashPath, []byte(fmt.Sprintf("%016x\n", hash)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	hexHash, err := os.ReadFile(hashPath)
	if err != nil {
		t.Fatal(err)
	}
	want, err := strconv.ParseUint(strings.TrimSpace(string(hexHash)), 16, 64)
	if err != nil {
		t.Fatalf("%s: %v", hashPath, err)
	}
	if hash != want {
		t.Errorf("Hash after the golden commands = %016x, earlier builds computed %016x", hash, want)
	}
	if !bytes.Equal(snap, golden) {
		t.Errorf("snapshot after the golden commands (%d bytes) differs from %s (%d bytes)", len(snap), snapPath, len(golden))
	}
	r := New()
	if err := r.Restore(bytes.NewReader(golden)); err != nil {
		t.Fatalf("Restore(%s): %v", snapPath, err)
	}
	if got := r.View().Hash(); got != want {
		t.Errorf("Hash of the restored golden snapshot = %016x, want %016x", got, want)
	}
	sameReads(t, s.View(), r.View())
	if !bytes.Equal(snapshotOf(t, r.View()), golden) {
		t.Error("snapshot of the restored golden snapshot differs from it")
	}
}
