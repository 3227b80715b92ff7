package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc64"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// sizeFromScratch sums what Size accounts for, independently of the
// incremental bookkeeping in Apply.
func sizeFromScratch(v *View) int64 {
	n := int64(v.leases.Len()) * leaseOverhead
	v.versions.Scan(func(r *record) bool {
		f := r.decode()
		n += int64(len(f.key)+len(f.value)) + versionOverhead
		return true
	})
	return n
}

// TestSizeIsDeterministic applies random commands (puts, deletes, txns,
// leases, compactions) and checks after each that the incremental size
// equals the size computed from the state, and that a store restored from
// a snapshot (a server that joined late) reports the same size.
func TestSizeIsDeterministic(t *testing.T) {
	s := New()
	for i, cmd := range randomCommands(t, 7, 800) {
		s.Apply(uint64(i+2), cmd)
		v := s.View()
		if got, want := v.Size(), sizeFromScratch(v); got != want {
			t.Fatalf("after command %d: Size() = %d, recomputed %d", i, got, want)
		}
		if i%100 == 0 {
			r := New()
			if err := r.Restore(bytes.NewReader(snapshotOf(t, v))); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if r.View().Size() != v.Size() {
				t.Fatalf("restored size %d, want %d", r.View().Size(), v.Size())
			}
		}
	}
	if s.View().Size() <= 0 {
		t.Fatalf("size %d after 800 commands", s.View().Size())
	}
}

func alarmCmd(t testing.TB, action pb.AlarmRequest_AlarmAction, member uint64) []byte {
	return mustEncode(t, CmdAlarm, &pb.AlarmRequest{Action: action, MemberID: member, Alarm: pb.AlarmType_NOSPACE})
}

// TestNoSpaceAlarm checks etcd's capped behaviour: with NOSPACE raised a
// txn that could put and a lease grant are refused, everything else
// applies; the alarm survives a snapshot and clears on DEACTIVATE.
func TestNoSpaceAlarm(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("a", "1")))
	applyOK(t, s, txnCmd(t, putOp("b", "2")))
	applyOK(t, s, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 7, TTL: 10}))
	res := applyOK(t, s, alarmCmd(t, pb.AlarmRequest_ACTIVATE, 42))
	if len(res.Alarm.GetAlarms()) != 1 || res.Alarm.Alarms[0].MemberID != 42 {
		t.Fatalf("activate response %v", res.Alarm)
	}
	applyOK(t, s, alarmCmd(t, pb.AlarmRequest_ACTIVATE, 42)) // idempotent
	if got := s.View().Alarms(); len(got) != 1 || got[0] != (Alarm{42, pb.AlarmType_NOSPACE}) || !s.View().NoSpace() {
		t.Fatalf("alarms %v", got)
	}
	refused := map[string][]byte{
		"put":              txnCmd(t, putOp("c", "3")),
		"put on failure":   mustEncode(t, CmdTxn, &pb.TxnRequest{Failure: []*pb.RequestOp{putOp("c", "3")}}),
		"put in a nested":  txnCmd(t, txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("c", "3")}})),
		"lease grant":      mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 8, TTL: 10}),
		"overwrite (cost)": txnCmd(t, putOp("a", "x")),
	}
	for name, cmd := range refused {
		before := s.View()
		res := s.Apply(before.Index()+1, cmd)
		if !errors.Is(res.Err, ErrNoSpace) {
			t.Errorf("%s under NOSPACE: err %v, want ErrNoSpace", name, res.Err)
		}
		if s.View().Rev() != before.Rev() || s.View().Size() != before.Size() {
			t.Errorf("%s under NOSPACE changed the store", name)
		}
	}
	// Reads, deletes, compaction and lease revocation still work.
	if r := get(t, s.View(), &pb.RangeRequest{Key: []byte("a")}); len(r.Kvs) != 1 {
		t.Fatalf("read under NOSPACE: %v", r)
	}
	applyOK(t, s, txnCmd(t, delOp("a", "")))
	applyOK(t, s, mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: s.View().Rev()}))
	applyOK(t, s, mustEncode(t, CmdLeaseRevoke, &pb.LeaseRevokeRequest{ID: 7}))

	// The alarm is replicated state: a snapshot carries it.
	r := New()
	if err := r.Restore(bytes.NewReader(snapshotOf(t, s.View()))); err != nil {
		t.Fatal(err)
	}
	if !r.View().NoSpace() || r.View().Hash() != s.View().Hash() {
		t.Fatalf("restored store lost the alarm (%v)", r.View().Alarms())
	}
	// Deactivating a member's alarm that is not raised changes nothing.
	if res := applyOK(t, s, alarmCmd(t, pb.AlarmRequest_DEACTIVATE, 1)); len(res.Alarm.Alarms) != 0 || !s.View().NoSpace() {
		t.Fatalf("deactivate of another member: %v, alarms %v", res.Alarm, s.View().Alarms())
	}
	applyOK(t, s, alarmCmd(t, pb.AlarmRequest_DEACTIVATE, 42))
	if s.View().NoSpace() {
		t.Fatal("alarm still raised after DEACTIVATE")
	}
	applyOK(t, s, txnCmd(t, putOp("c", "3")))
}

func TestAlarmBadCommands(t *testing.T) {
	s := New()
	for name, req := range map[string]*pb.AlarmRequest{
		"get is not a command": {Action: pb.AlarmRequest_GET, Alarm: pb.AlarmType_NOSPACE},
		"corrupt undefined":    {Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_CORRUPT},
		"none":                 {Action: pb.AlarmRequest_ACTIVATE},
	} {
		if res := s.Apply(s.View().Index()+1, mustEncode(t, CmdAlarm, req)); !errors.Is(res.Err, ErrBadCommand) {
			t.Errorf("%s: err %v, want ErrBadCommand", name, res.Err)
		}
	}
	if len(s.View().Alarms()) != 0 {
		t.Fatalf("alarms %v after refused commands", s.View().Alarms())
	}
}

// TestSnapshotVersion1 restores a snapshot written before the alarm
// section existed: same state, no alarms.
func TestSnapshotVersion1(t *testing.T) {
	s := New()
	for i, cmd := range randomCommands(t, 5, 100) {
		s.Apply(uint64(i+2), cmd)
	}
	v2 := snapshotOf(t, s.View())
	// Drop the (empty) alarm section and the checksum, mark it version 1
	// and checksum it again.
	body := bytes.Clone(v2[:len(v2)-8-1])
	binary.BigEndian.PutUint32(body[len(snapMagic):], 1)
	v1 := binary.BigEndian.AppendUint64(body, crc64.Checksum(body, crcTable))
	r := New()
	if err := r.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatalf("restore version 1: %v", err)
	}
	if r.View().Hash() != s.View().Hash() || r.View().Size() != s.View().Size() {
		t.Fatal("version 1 snapshot restored a different state")
	}
}

func TestTxnCost(t *testing.T) {
	r := &pb.TxnRequest{
		Success: []*pb.RequestOp{putOp("ab", "cde"), delOp("x", "")},
		Failure: []*pb.RequestOp{txnOp(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("k", "")}})},
	}
	if got, want := TxnCost(r), int64(5+versionOverhead+1+versionOverhead); got != want {
		t.Fatalf("TxnCost = %d, want %d", got, want)
	}
	if TxnCost(&pb.TxnRequest{Success: []*pb.RequestOp{delOp("a", "")}}) != 0 {
		t.Fatal("a delete-only txn costs something")
	}
}
