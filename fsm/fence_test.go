package fsm

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestFencedCommandAppliesOnlyInItsTerm(t *testing.T) {
	s := New()
	applyOK(t, s, txnCmd(t, putOp("/a", "0")))
	rev := s.View().Rev()

	// Another term: refused, nothing but the index moves.
	idx := s.View().Index() + 1
	res := s.ApplyEntry(idx, 8, Fence(7, txnCmd(t, putOp("/a", "stale"))))
	if !errors.Is(res.Err, ErrFenced) {
		t.Fatalf("fenced to term 7, applied in term 8: err %v, want ErrFenced", res.Err)
	}
	if s.View().Rev() != rev || s.View().Index() != idx {
		t.Fatalf("refused command moved rev %d -> %d or left index at %d (want %d)", rev, s.View().Rev(), s.View().Index(), idx)
	}
	if got := get(t, s.View(), &pb.RangeRequest{Key: []byte("/a")}); string(got.Kvs[0].Value) != "0" {
		t.Fatalf("refused command wrote %q", got.Kvs[0].Value)
	}
	// Its own term: applied as the command it wraps.
	res = s.ApplyEntry(s.View().Index()+1, 7, Fence(7, txnCmd(t, putOp("/a", "1"))))
	if res.Err != nil || res.Rev <= rev {
		t.Fatalf("fenced to term 7, applied in term 7: %+v (rev before %d)", res, rev)
	}
	// Without a known term (Apply), a fenced command never applies.
	if res := s.Apply(s.View().Index()+1, Fence(7, txnCmd(t, putOp("/a", "2")))); !errors.Is(res.Err, ErrFenced) {
		t.Fatalf("fenced command applied without a term: %v", res.Err)
	}
}

func TestMalformedFencedCommands(t *testing.T) {
	s := New()
	inner := txnCmd(t, putOp("/a", "1"))
	for name, cmd := range map[string][]byte{
		"no term":      {CmdFenced},
		"term only":    Fence(3, nil),
		"fenced twice": Fence(3, Fence(3, inner)),
		"short term":   {CmdFenced, 0, 0, 3},
	} {
		res := s.ApplyEntry(s.View().Index()+1, 3, cmd)
		if !errors.Is(res.Err, ErrBadCommand) {
			t.Errorf("%s: err %v, want ErrBadCommand", name, res.Err)
		}
	}
	if s.View().Rev() != 1 {
		t.Errorf("malformed commands wrote: rev %d", s.View().Rev())
	}
}
