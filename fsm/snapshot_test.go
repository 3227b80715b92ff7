package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// randomCommands returns n encoded commands from the model generator.
func randomCommands(t testing.TB, seed uint64, n int) [][]byte {
	g := &gen{r: rand.New(rand.NewPCG(seed, 11)), m: newModel()}
	cmds := make([][]byte, n)
	for i := range cmds {
		typ, msg := g.command()
		cmds[i] = mustEncode(t, typ, msg)
		g.m.apply(msg, typ == CmdLeaseExpire) // keeps revisions in the generator realistic
	}
	return cmds
}

func snapshotOf(t testing.TB, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := v.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return buf.Bytes()
}

// sameReads compares two views through the public read API: every key at
// every retained revision, every event, every lease.
func sameReads(t *testing.T, a, b *View) {
	t.Helper()
	if a.Index() != b.Index() || a.Rev() != b.Rev() || a.CompactRev() != b.CompactRev() {
		t.Fatalf("index/rev/compact %d/%d/%d vs %d/%d/%d", a.Index(), a.Rev(), a.CompactRev(), b.Index(), b.Rev(), b.CompactRev())
	}
	for rev := a.CompactRev(); rev <= a.Rev(); rev++ {
		r := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		ra, erra := a.Range(r)
		rb, errb := b.Range(r)
		if !sameErr(erra, errb) || !proto.Equal(ra, rb) {
			t.Fatalf("read at %d: %v %v vs %v %v", rev, ra, erra, rb, errb)
		}
	}
	events := func(v *View) []string {
		var out []string
		if err := v.Events(v.CompactRev(), []byte{0}, []byte{0}, func(rev int64, ev Event) bool {
			out = append(out, fmt.Sprint(rev, ev.Type, ev.Kv, ev.PrevKv))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if ea, eb := events(a), events(b); fmt.Sprint(ea) != fmt.Sprint(eb) {
		t.Fatalf("events differ:\n%q\n%q", ea, eb)
	}
	if la, lb := a.Leases(), b.Leases(); fmt.Sprint(la) != fmt.Sprint(lb) {
		t.Fatalf("leases %v vs %v", la, lb)
	}
	for _, l := range a.Leases() {
		_, ka, _ := a.Lease(l.ID)
		_, kb, _ := b.Lease(l.ID)
		if fmt.Sprint(ka) != fmt.Sprint(kb) {
			t.Fatalf("lease %d keys %q vs %q", l.ID, ka, kb)
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			cmds := randomCommands(t, seed, 200)
			full, a, b := New(), New(), New()
			cut := 50 + int(seed)*15
			for i, cmd := range cmds {
				full.Apply(uint64(i+1), cmd)
				if i < cut {
					a.Apply(uint64(i+1), cmd)
				}
				// Replay equality: same commands, same hash at every index.
				b.Apply(uint64(i+1), cmd)
				if full.View().Hash() != b.View().Hash() {
					t.Fatalf("replay diverged at index %d", i+1)
				}
			}
			snap := snapshotOf(t, a.View())
			// Restore into a store with unrelated state: nothing may survive.
			r1, r2 := New(), New()
			r1.Apply(1, txnCmd(t, putOp("stale", "x")))
			r1.Apply(2, mustEncode(t, CmdLeaseGrant, &pb.LeaseGrantRequest{ID: 99, TTL: 1}))
			changed := r1.View().Next()
			for _, r := range []*Store{r1, r2} {
				if err := r.Restore(bytes.NewReader(snap)); err != nil {
					t.Fatalf("Restore: %v", err)
				}
			}
			select {
			case <-changed:
			default:
				t.Error("Restore did not close the old view's Next")
			}
			if h := a.View().Hash(); r1.View().Hash() != h || r2.View().Hash() != h {
				t.Fatalf("hash after restore %x/%x, want %x", r1.View().Hash(), r2.View().Hash(), h)
			}
			sameReads(t, a.View(), r1.View())
			if !bytes.Equal(snapshotOf(t, r1.View()), snap) {
				t.Error("snapshot of a restored store differs from the original")
			}
			// Restored at cut, then fed the rest, equals the full replay.
			for i := cut; i < len(cmds); i++ {
				r1.Apply(uint64(i+1), cmds[i])
			}
			if r1.View().Hash() != full.View().Hash() {
				t.Fatal("restore + replay differs from full replay")
			}
			sameReads(t, full.View(), r1.View())
		})
	}
}

func TestRestoreRejectsBadSnapshots(t *testing.T) {
	s := New()
	for _, cmd := range randomCommands(t, 3, 60) {
		s.Apply(s.View().Index()+1, cmd)
	}
	good := snapshotOf(t, s.View())
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		return b
	}
	badVersion := bytes.Clone(good)
	badVersion[len(snapMagic)+3] = 9
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "reading header"},
		{"bad magic", flip(0), "not a keelson fsm snapshot"},
		{"future version", badVersion, "unsupported snapshot format version 9"},
		{"flipped byte", flip(len(good) / 2), ""},
		{"flipped checksum", flip(len(good) - 1), "checksum mismatch"},
		{"truncated", good[:len(good)-20], ""},
		{"trailing data", append(bytes.Clone(good), 0), "trailing data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			r.Apply(1, txnCmd(t, putOp("keep", "me")))
			before := r.View().Hash()
			err := r.Restore(bytes.NewReader(tc.data))
			if !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("err = %v, want ErrBadSnapshot", err)
			}
			if tc.want != "" && !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
			if r.View().Hash() != before {
				t.Error("failed restore changed the store")
			}
		})
	}
	if err := New().Restore(io.MultiReader(bytes.NewReader(good))); err != nil {
		t.Fatalf("good snapshot refused: %v", err)
	}
}

func TestHashCoversHistory(t *testing.T) {
	// Same live keys, different history: hashes must differ.
	a, b := New(), New()
	applyOK(t, a, txnCmd(t, putOp("k", "v")))
	applyOK(t, b, txnCmd(t, putOp("k", "x")))
	applyOK(t, a, txnCmd(t, putOp("k", "w")))
	applyOK(t, b, txnCmd(t, putOp("k", "w")))
	if a.View().Hash() == b.View().Hash() {
		t.Error("hash ignores past versions")
	}
}
