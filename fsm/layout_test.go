package fsm

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// TestOldViewsStayPut holds views while the writer keeps applying (puts,
// deletes, leases, compactions) and checks that every held view keeps
// answering exactly as it did when it was taken. Run under -race it also
// checks that readers and the writer share the trees and the event log
// without data races.
func TestOldViewsStayPut(t *testing.T) {
	s := New()
	cmds := randomCommands(t, 42, 600)
	for i, cmd := range cmds[:100] {
		s.Apply(uint64(i+1), cmd)
	}
	all := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	type observed struct {
		v      *View
		hash   uint64
		rng    *pb.RangeResponse
		events int
	}
	observe := func(v *View) observed {
		rng, err := v.Range(all)
		if err != nil {
			t.Errorf("Range at index %d: %v", v.Index(), err)
		}
		n := 0
		if err := v.Events(v.CompactRev(), []byte{0}, []byte{0}, func(int64, Event) bool { n++; return true }); err != nil {
			t.Errorf("Events at index %d: %v", v.Index(), err)
		}
		return observed{v: v, hash: v.Hash(), rng: rng, events: n}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var held []observed
			for i := 0; ; i++ {
				select {
				case <-done:
					for _, o := range held {
						if now := observe(o.v); now.hash != o.hash || !proto.Equal(now.rng, o.rng) || now.events != o.events {
							t.Errorf("reader %d: view at index %d changed after newer applies", r, o.v.Index())
						}
					}
					return
				default:
				}
				o := observe(s.View())
				if i%8 == 0 {
					held = append(held, o)
				}
				if err := o.v.WriteSnapshot(&bytes.Buffer{}); err != nil {
					t.Errorf("snapshot at index %d: %v", o.v.Index(), err)
				}
			}
		}()
	}
	for i := 100; i < len(cmds); i++ {
		s.Apply(uint64(i+1), cmds[i])
	}
	close(done)
	wg.Wait()
}

// TestCompactionDropsExactly checks that incremental compaction (which only
// visits keys written since the last one) retains exactly the versions and
// events that compacting the whole history in one pass would.
func TestCompactionDropsExactly(t *testing.T) {
	compactions := 0
	for seed := range uint64(12) {
		s := New()
		for i, cmd := range randomCommands(t, seed, 300) {
			before := s.View()
			if res := s.Apply(uint64(i+1), cmd); cmd[0] != CmdCompact || res.Err != nil {
				continue
			}
			compactions++
			after := s.View()
			rev := after.CompactRev()
			want := naiveCompact(before.versions.Items(), rev)
			if got := versionStrings(after.versions.Items()); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("seed %d: versions after compaction to %d:\n got %q\nwant %q", seed, rev, got, want)
			}
			var gotEv, wantEv []string
			collect := func(out *[]string) func(int64, Event) bool {
				return func(rev int64, ev Event) bool { *out = append(*out, fmt.Sprint(rev, ev.Kv)); return true }
			}
			if err := after.Events(rev, []byte{0}, []byte{0}, collect(&gotEv)); err != nil {
				t.Fatal(err)
			}
			if err := before.Events(rev, []byte{0}, []byte{0}, collect(&wantEv)); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(gotEv) != fmt.Sprint(wantEv) {
				t.Fatalf("seed %d: events after compaction to %d:\n got %q\nwant %q", seed, rev, gotEv, wantEv)
			}
		}
	}
	if compactions < 10 {
		t.Fatalf("only %d compactions exercised", compactions)
	}
}

// naiveCompact applies the compaction rule to every key of a full history:
// of the versions <= rev keep only the newest, and not even that one when
// it is a delete.
func naiveCompact(all []*record, rev int64) []string {
	var kept []*record
	for i, r := range all {
		newer := i+1 < len(all) && bytes.Equal(all[i+1].key(), r.key()) && all[i+1].mod() <= rev
		if r.mod() <= rev && (newer || r.isTombstone()) {
			continue
		}
		kept = append(kept, r)
	}
	return versionStrings(kept)
}

func versionStrings(rs []*record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%q@%d live=%v", r.key(), r.mod(), !r.isTombstone())
	}
	return out
}

func TestEventLogChunks(t *testing.T) {
	// Enough single-event revisions to span several chunks, then compact
	// into the middle of a chunk and keep appending.
	s := New()
	n := 3*logChunk + 17
	for i := range n {
		applyOK(t, s, txnCmd(t, putOp(fmt.Sprint("k", i%50), "v")))
	}
	old := s.View()
	cut := int64(2*logChunk + 5)
	applyOK(t, s, mustEncode(t, CmdCompact, &pb.CompactionRequest{Revision: cut}))
	for range logChunk {
		applyOK(t, s, txnCmd(t, putOp("after", "v")))
	}
	count := func(v *View, from int64) (n int, first int64) {
		if err := v.Events(from, []byte{0}, []byte{0}, func(rev int64, _ Event) bool {
			if n == 0 {
				first = rev
			}
			n++
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return n, first
	}
	if got, first := count(old, 0); got != n || first != 1 {
		t.Errorf("old view: %d events from %d, want %d from 1", got, first, n)
	}
	if got, first := count(s.View(), cut); got != n-int(cut)+1+logChunk || first != cut {
		t.Errorf("compacted view: %d events from %d, want %d from %d", got, first, n-int(cut)+1+logChunk, cut)
	}
}
