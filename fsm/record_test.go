package fsm

import (
	"bytes"
	"math"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	cases := []fields{
		{key: []byte("k"), mod: 2, create: 2, ver: 1},
		{key: []byte("a\x00b"), value: bytes.Repeat([]byte{0xff}, 300), create: 3, mod: math.MaxInt64, ver: 1 << 40, lease: 1<<63 - 1},
		{key: bytes.Repeat([]byte("x"), 200), mod: 9}, // a tombstone
	}
	for _, f := range cases {
		r := newRecord(f)
		got := r.decode()
		if !bytes.Equal(got.key, f.key) || !bytes.Equal(got.value, f.value) || got.create != f.create ||
			got.mod != f.mod || got.ver != f.ver || got.lease != f.lease {
			t.Errorf("decode(newRecord(%+v)) = %+v", f, got)
		}
		if len(r.b) != cap(r.b) {
			t.Errorf("record of %q: len %d, cap %d: the size was not computed exactly", f.key, len(r.b), cap(r.b))
		}
		if !bytes.Equal(r.key(), f.key) || r.mod() != f.mod || r.isTombstone() != (f.ver == 0) {
			t.Errorf("record of %q: key %q mod %d tombstone %v", f.key, r.key(), r.mod(), r.isTombstone())
		}
		if f.value == nil && got.value != nil {
			t.Errorf("record of %q: empty value decodes to %q, want nil (as KeyValues always had)", f.key, got.value)
		}
	}
}

// TestRecordOrder checks the comparators against probes at the extreme
// revisions the scans seek with.
func TestRecordOrder(t *testing.T) {
	a5, a7, b1 := newRecord(fields{key: []byte("a"), mod: 5}), newRecord(fields{key: []byte("a"), mod: 7}), newRecord(fields{key: []byte("b"), mod: 1})
	lo, hi := &record{}, &record{}
	lo.setProbe([]byte("a"), math.MinInt64)
	hi.setProbe([]byte("a"), math.MaxInt64)
	ordered := []*record{lo, a5, a7, hi, b1}
	for i := 0; i+1 < len(ordered); i++ {
		if !byKeyRev(ordered[i], ordered[i+1]) || byKeyRev(ordered[i+1], ordered[i]) {
			t.Errorf("byKeyRev: %q@%d should sort before %q@%d", ordered[i].key(), ordered[i].mod(), ordered[i+1].key(), ordered[i+1].mod())
		}
	}
	if byKey(a5, a7) || byKey(a7, a5) || !byKey(a7, b1) {
		t.Error("byKey must order by key alone")
	}
}
