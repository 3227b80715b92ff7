package raftnode

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// testSegmentSize is small, so a few hundred entries fill several segments.
const testSegmentSize = 16 << 10

func quietHCLog() hclog.Logger { return hclog.NewNullLogger() }

func newTestWAL(t testing.TB, dir string) *walLog {
	t.Helper()
	w, err := openWALLog(dir, testSegmentSize, quietHCLog())
	if err != nil {
		t.Fatalf("openWALLog(%s): %v", dir, err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// entry is the log entry the tests write at index i: its data size varies
// so segments fill at different entries.
func entry(i, term uint64) *raft.Log {
	data := make([]byte, 20+int(i*37%700))
	for j := range data {
		data[j] = byte(i + uint64(j))
	}
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: data, Extensions: []byte("v1")}
}

func entries(lo, hi, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := lo; i <= hi; i++ {
		out = append(out, entry(i, term))
	}
	return out
}

// logModel is the reference: a contiguous log [first, first+len) held in a
// slice, with the operations raft performs on a log store.
type logModel struct {
	first uint64
	es    []*raft.Log
}

func (m *logModel) last() uint64 {
	if len(m.es) == 0 {
		return 0
	}
	return m.first + uint64(len(m.es)) - 1
}

func (m *logModel) firstIndex() uint64 {
	if len(m.es) == 0 {
		return 0
	}
	return m.first
}

func (m *logModel) store(es []*raft.Log) {
	if len(m.es) == 0 {
		m.first = es[0].Index
	}
	m.es = append(m.es, es...)
}

func (m *logModel) deleteRange(lo, hi uint64) {
	switch last := m.last(); {
	case len(m.es) == 0 || hi < m.first || lo > last:
	case lo <= m.first:
		n := min(hi, last) - m.first + 1
		m.es = m.es[n:]
		m.first = hi + 1
	default: // a suffix: lo > first and hi >= last
		m.es = m.es[:lo-m.first]
	}
}

// checkAgainst compares every entry and both bounds of s with m.
func (m *logModel) checkAgainst(t *testing.T, s raft.LogStore, step string) {
	t.Helper()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatalf("%s: FirstIndex: %v", step, err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatalf("%s: LastIndex: %v", step, err)
	}
	if first != m.firstIndex() || last != m.last() {
		t.Fatalf("%s: log is %d-%d, model %d-%d", step, first, last, m.firstIndex(), m.last())
	}
	for i, want := range m.es {
		var got raft.Log
		if err := s.GetLog(m.first+uint64(i), &got); err != nil {
			t.Fatalf("%s: GetLog(%d): %v", step, m.first+uint64(i), err)
		}
		if got.Index != want.Index || got.Term != want.Term || !slices.Equal(got.Data, want.Data) || !slices.Equal(got.Extensions, want.Extensions) {
			t.Fatalf("%s: entry %d is {index %d term %d, %d bytes}, want {index %d term %d, %d bytes}",
				step, want.Index, got.Index, got.Term, len(got.Data), want.Index, want.Term, len(want.Data))
		}
	}
	var none raft.Log
	if err := s.GetLog(m.last()+1, &none); err != raft.ErrLogNotFound {
		t.Fatalf("%s: GetLog(%d) past the end = %v, want raft.ErrLogNotFound", step, m.last()+1, err)
	}
	if m.first > 1 {
		if err := s.GetLog(m.first-1, &none); err != raft.ErrLogNotFound {
			t.Fatalf("%s: GetLog(%d) below the first entry = %v, want raft.ErrLogNotFound", step, m.first-1, err)
		}
	}
}

// TestWALLogMatchesModel drives the WAL and the reference model through the
// same random appends, compactions (prefix deletes), conflict truncations
// (suffix deletes) and restarts, across many segment switches, and compares
// them after every step.
func TestWALLogMatchesModel(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			dir := t.TempDir()
			w := newTestWAL(t, dir)
			var m logModel
			term := uint64(1)
			for step := 0; step < 300; step++ {
				var what string
				switch op := rng.IntN(20); {
				case op < 13 || len(m.es) == 0:
					n := 1 + uint64(rng.IntN(40))
					next := m.last() + 1
					if len(m.es) == 0 && step > 0 {
						next = m.first + uint64(rng.IntN(5)) // after a full compaction raft may restart anywhere above
					}
					es := entries(next, next+n-1, term)
					what = fmt.Sprintf("store %d-%d", next, next+n-1)
					if err := w.StoreLogs(es); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.store(es)
				case op < 16:
					hi := m.first + uint64(rng.IntN(len(m.es)+1))
					what = fmt.Sprintf("compact up to %d", hi)
					if err := w.DeleteRange(m.first, hi); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.deleteRange(m.first, hi)
					if len(m.es) == 0 {
						m.first = hi + 1
					}
				case op < 18:
					lo := m.first + uint64(rng.IntN(len(m.es)))
					if lo == m.first {
						lo++ // raft only truncates a suffix above the first entry
					}
					what = fmt.Sprintf("truncate from %d", lo)
					if err := w.DeleteRange(lo, m.last()); err != nil {
						t.Fatalf("step %d %s: %v", step, what, err)
					}
					m.deleteRange(lo, m.last())
					term++ // a new leader's entries replace the suffix
				default:
					what = "restart"
					if err := w.Close(); err != nil {
						t.Fatalf("step %d close: %v", step, err)
					}
					w = newTestWAL(t, dir)
				}
				m.checkAgainst(t, w, fmt.Sprintf("step %d (%s)", step, what))
			}
		})
	}
}

// failingMeta is raft-wal's metadata store whose commits fail while fail is
// set, as on a full disk.
type failingMeta struct {
	types.MetaStore
	fail *bool
}

func (f *failingMeta) CommitState(s types.PersistentState) error {
	if *f.fail {
		return errors.New("injected: no space left on device")
	}
	return f.MetaStore.CommitState(s)
}

// storeUntilSealed appends single entries from next on while meta commits
// fail, until raft-wal refuses an append because the segment it sealed
// could not be switched; it returns the first index not stored.
func storeUntilSealed(t *testing.T, s raft.LogStore, fail *bool, next uint64) uint64 {
	t.Helper()
	*fail = true
	defer func() { *fail = false }()
	for range 1000 {
		err := s.StoreLogs([]*raft.Log{entry(next, 1)})
		if errors.Is(err, wal.ErrSealed) {
			return next
		}
		if err != nil {
			t.Fatalf("store %d: %v", next, err)
		}
		next++
	}
	t.Fatalf("no segment sealed after 1000 entries of up to 720 bytes in %d-byte segments", testSegmentSize)
	return 0
}

// TestWALLogFinishesInterruptedSegmentSwitch covers the gap walLog closes in
// raft-wal: a segment sealed by an append whose switch to the next segment
// was never recorded (the process died, or the metadata write failed). Bare
// raft-wal then refuses every append, even after a restart; walLog must
// finish the switch and keep every entry.
func TestWALLogFinishesInterruptedSegmentSwitch(t *testing.T) {
	t.Run("across a restart", func(t *testing.T) {
		dir := t.TempDir()
		fail := new(bool)
		meta := &failingMeta{MetaStore: &metadb.BoltMetaDB{}, fail: fail}
		bare, err := wal.Open(dir, wal.WithSegmentSize(testSegmentSize), wal.WithLogger(quietHCLog()), wal.WithMetaStore(meta))
		if err != nil {
			t.Fatal(err)
		}
		var m logModel
		m.store(entries(1, 5, 1))
		if err := bare.StoreLogs(m.es); err != nil {
			t.Fatal(err)
		}
		next := storeUntilSealed(t, bare, fail, 6)
		m.store(entries(6, next-1, 1))
		if err := bare.Close(); err != nil {
			t.Fatal(err)
		}

		w := newTestWAL(t, dir)
		m.checkAgainst(t, w, "reopened")
		if err := w.StoreLogs(entries(next, next+3, 1)); err != nil {
			t.Fatalf("append after the interrupted switch: %v", err)
		}
		m.store(entries(next, next+3, 1))
		m.checkAgainst(t, w, "appended")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m.checkAgainst(t, newTestWAL(t, dir), "restarted")
	})
	t.Run("in the running process", func(t *testing.T) {
		dir := t.TempDir()
		fail := new(bool)
		w, err := openWALLogWith(dir, testSegmentSize, quietHCLog(), walFaults{meta: func(s types.MetaStore) types.MetaStore {
			return &failingMeta{MetaStore: s, fail: fail}
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		var m logModel
		m.store(entries(1, 5, 1))
		if err := w.StoreLogs(m.es); err != nil {
			t.Fatal(err)
		}
		// While the disk is full the refused append fails, and so does the
		// reopen that would finish the switch.
		next := storeUntilSealed(t, w, fail, 6)
		m.store(entries(6, next-1, 1))
		// Space again: the same append goes through.
		if err := w.StoreLogs(entries(next, next+3, 1)); err != nil {
			t.Fatalf("append once the metadata can be written again: %v", err)
		}
		m.store(entries(next, next+3, 1))
		m.checkAgainst(t, w, "after the switch")
	})
	t.Run("new segment file cannot be created", func(t *testing.T) {
		// The switch is recorded, and its file is left empty: reopening
		// recovers that file as the tail, so no append fails at all.
		dir := t.TempDir()
		fail := new(bool)
		segs := &failingSegments{dir: dir, fail: fail}
		w, err := openWALLogWith(dir, testSegmentSize, quietHCLog(), walFaults{segments: func(s types.SegmentFiler) types.SegmentFiler {
			segs.SegmentFiler = s
			return segs
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.Close() })
		var m logModel
		*fail = true
		for i := uint64(1); i <= 200; i++ {
			if err := w.StoreLogs([]*raft.Log{entry(i, 1)}); err != nil {
				t.Fatalf("append %d while segment files cannot be created: %v", i, err)
			}
			m.store([]*raft.Log{entry(i, 1)})
		}
		*fail = false
		if segs.refused == 0 {
			t.Fatal("no segment switch happened while creating segment files failed")
		}
		if err := w.StoreLogs(entries(201, 210, 1)); err != nil {
			t.Fatal(err)
		}
		m.store(entries(201, 210, 1))
		m.checkAgainst(t, w, "after the failed switches")
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m.checkAgainst(t, newTestWAL(t, dir), "restarted")
	})
}

// failingSegments is raft-wal's segment filer whose new segment files, while
// fail is set, are left empty and refused, as when preallocating them runs
// out of space.
type failingSegments struct {
	types.SegmentFiler
	dir     string
	fail    *bool
	refused int
}

func (f *failingSegments) Create(info types.SegmentInfo) (types.SegmentWriter, error) {
	if *f.fail {
		f.refused++
		if err := os.WriteFile(filepath.Join(f.dir, segment.FileName(info)), nil, 0o600); err != nil {
			return nil, err
		}
		return nil, errors.New("injected: no space left on device")
	}
	return f.SegmentFiler.Create(info)
}

// segmentFiles lists the WAL's segment files in dir.
func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	des, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(from, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// tornBatches is how many batches FuzzWALLogTornTail writes before the torn one.
const tornBatches = 6

// FuzzWALLogTornTail tears the last append: the segment file holds every
// byte of the earlier batches, but of the last batch's bytes only a prefix
// (keep) and then a random subset of 512-byte sectors (seed), as a power
// loss during the write can leave it. Reopened, the log must be exactly the
// earlier batches, or all of them if the torn write happens to be whole,
// and take appends again.
func FuzzWALLogTornTail(f *testing.F) {
	f.Add(uint8(0), uint16(0), uint64(1))
	f.Add(uint8(2), uint16(5), uint64(2))
	f.Add(uint8(3), uint16(600), uint64(3))
	f.Add(uint8(4), uint16(65535), uint64(4))
	f.Add(uint8(5), uint16(17), uint64(0))
	f.Fuzz(func(t *testing.T, batch uint8, keep uint16, seed uint64) {
		k := uint64(batch % tornBatches) // the batch after k is torn
		dir := t.TempDir()
		w, err := openWALLog(dir, 1<<20, quietHCLog()) // one segment: no switch
		if err != nil {
			t.Fatal(err)
		}
		var images [][]byte
		lastOf := []uint64{0}
		next := uint64(1)
		for b := uint64(0); b <= k+1; b++ {
			n := 1 + (b*7+seed)%9
			if err := w.StoreLogs(entries(next, next+n-1, 1)); err != nil {
				t.Fatal(err)
			}
			next += n
			lastOf = append(lastOf, next-1)
			segs := segmentFiles(t, dir)
			if len(segs) != 1 {
				t.Fatalf("%d segment files, want 1", len(segs))
			}
			img, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			images = append(images, img)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		before, after := images[k], images[k+1]
		lo, hi := -1, -1
		for i := range after {
			if before[i] != after[i] {
				if lo < 0 {
					lo = i
				}
				hi = i + 1
			}
		}
		if lo < 0 {
			t.Fatalf("batch %d changed no byte of the segment", k+1)
		}
		torn := slices.Clone(after)
		rng := rand.New(rand.NewPCG(seed, uint64(keep)))
		for i := lo + int(keep); i < hi; i += 512 {
			if rng.IntN(2) == 0 {
				end := min(i+512, hi)
				copy(torn[i:end], before[i:end])
			}
		}
		crashed := t.TempDir()
		copyDir(t, dir, crashed)
		if err := os.WriteFile(filepath.Join(crashed, filepath.Base(segmentFiles(t, dir)[0])), torn, 0o600); err != nil {
			t.Fatal(err)
		}

		r := newTestWAL(t, crashed)
		last, err := r.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		if last != lastOf[k+1] && last != lastOf[k+2] {
			t.Fatalf("after a torn write of entries %d-%d the log ends at %d, want %d (torn batch dropped) or %d (whole)",
				lastOf[k+1]+1, lastOf[k+2], last, lastOf[k+1], lastOf[k+2])
		}
		m := logModel{first: 1, es: entries(1, last, 1)}
		m.checkAgainst(t, r, "recovered")
		if err := r.StoreLogs(entries(last+1, last+3, 1)); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
		m.store(entries(last+1, last+3, 1))
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		m.checkAgainst(t, newTestWAL(t, crashed), "reopened after the append")
	})
}
