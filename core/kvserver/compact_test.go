package kvserver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The leader's compactor keeps history within both the revision window and
// the byte limit, whichever asks for more.
func TestCompactTarget(t *testing.T) {
	store := fsm.New()
	val := strings.Repeat("v", 1000)
	for i := 0; i < 10; i++ {
		put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(val)}}}
		cmd, err := fsm.Encode(fsm.CmdTxn, &pb.TxnRequest{Success: []*pb.RequestOp{put}})
		if err != nil {
			t.Fatal(err)
		}
		if res := store.Apply(uint64(i+2), cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	v := store.View() // revisions 2..11, one event of 1002+overhead bytes each
	per := fsm.VersionCost([]byte("k0"), []byte(val))
	cases := []struct {
		name          string
		revs, bytes   int64
		want          int64
		wantCompacted bool
	}{
		{"no limits", 0, 0, 0, false},
		{"revisions only", 4, 0, 7, true},
		{"bytes only", 0, 3 * per, 9, true},
		{"bytes ask for more", 8, 3 * per, 9, true},
		{"revisions ask for more", 2, 5 * per, 9, true},
		{"both satisfied", 100, 100 * per, 0, false},
	}
	for _, c := range cases {
		s := New(Config{HistoryRevisions: c.revs, HistoryBytes: c.bytes}, store, nil)
		got, ok := s.compactTarget(v)
		if ok != c.wantCompacted || (ok && got != c.want) {
			t.Errorf("%s: compact to %d (%v), want %d (%v)", c.name, got, ok, c.want, c.wantCompacted)
		}
	}
}
