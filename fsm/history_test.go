package fsm

import (
	"bytes"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The retained history's accounted size follows appends, compaction and
// restore, and HistoryKeepWithin names the revision that brings it under a
// byte limit.
func TestHistoryBytes(t *testing.T) {
	s := New()
	if b := s.View().HistoryBytes(); b != 0 {
		t.Fatalf("empty store: %d history bytes", b)
	}
	val := strings.Repeat("v", 100)
	per := VersionCost([]byte("k0"), []byte(val))
	var revs []int64
	for _, k := range []string{"k0", "k1", "k2", "k3", "k4"} {
		revs = append(revs, applyOK(t, s, txnCmd(t, putOp(k, val))).Rev)
	}
	// Two events in one revision: the delete of k0 and k1 (tombstones).
	revs = append(revs, applyOK(t, s, txnCmd(t, delOp("k0", "k2"))).Rev)
	tomb := VersionCost([]byte("k0"), nil)
	v := s.View()
	if got, want := v.HistoryBytes(), 5*per+2*tomb; got != want {
		t.Fatalf("history bytes %d, want %d", got, want)
	}
	cases := []struct {
		limit int64
		want  int64
	}{
		{5*per + 2*tomb, 0},       // everything fits
		{3*per + 2*tomb, revs[2]}, // keep k2, k3, k4 and the delete
		{3*per + 2*tomb - 1, revs[3]},
		{2 * tomb, revs[5]},
		{tomb, revs[5]}, // the newest revision is kept whole
		{0, revs[5]},
	}
	for _, c := range cases {
		if got := v.HistoryKeepWithin(c.limit); got != c.want {
			t.Errorf("HistoryKeepWithin(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	applyOK(t, s, mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: revs[3]}))
	if got, want := s.View().HistoryBytes(), 2*per+2*tomb; got != want {
		t.Fatalf("after compacting to %d: %d history bytes, want %d", revs[3], got, want)
	}
	r := New()
	if err := r.Restore(bytes.NewReader(snapshotOf(t, s.View()))); err != nil {
		t.Fatal(err)
	}
	if got, want := r.View().HistoryBytes(), 2*per+2*tomb; got != want {
		t.Fatalf("restored: %d history bytes, want %d", got, want)
	}
}
