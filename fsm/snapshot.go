package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc64"
	"io"
	"math"

	"github.com/tidwall/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Snapshot format, version 2 (all integers varint/uvarint unless noted):
//
//	magic "KEELFSM\n" | format version (uint32 big endian)
//	index | rev | compactRev
//	lease count | (id, ttl)...
//	version count | (key bytes, rev, kv-or-tombstone)...
//	event revision count | (rev, event count, (type, kv, prevkv)...)...
//	alarm count | (member id, alarm type)...     (version 2 and later)
//	CRC-64/ECMA of everything above (uint64 big endian)
//
// Version 1 (no alarm section) is still read: it restores with no alarms.
//
// Versions are written in (key, revision) order and events in revision
// order, as they are held, so a restore gives back exactly the same history
// (and Hash); the live keys and the lease index are derived from them.
const (
	snapMagic   = "KEELFSM\n"
	snapVersion = 2
	// maxSnapBytes bounds one length-prefixed field so a corrupt length
	// cannot make Restore allocate without limit.
	maxSnapBytes = 1 << 30
)

var crcTable = crc64.MakeTable(crc64.ECMA)

// WriteSnapshot streams the view in the versioned snapshot format.
func (v *View) WriteSnapshot(w io.Writer) error {
	e := &snapEncoder{w: w, crc: crc64.New(crcTable)}
	e.buf = append(e.buf, snapMagic...)
	e.buf = binary.BigEndian.AppendUint32(e.buf, snapVersion)
	e.u64(v.index)
	e.i64(v.rev)
	e.i64(v.compactRev)
	leases := v.Leases()
	e.u64(uint64(len(leases)))
	for _, l := range leases {
		e.i64(l.ID)
		e.i64(l.TTL)
	}
	e.u64(uint64(v.versions.Len()))
	v.versions.Scan(func(r *record) bool {
		e.bytes(r.key())
		e.i64(r.mod())
		e.kv(liveOrNil(r))
		return e.err == nil
	})
	e.u64(uint64(v.events.revisionCount()))
	v.events.revisions(func(rev int64, lo, hi int) bool {
		e.i64(rev)
		e.u64(uint64(hi - lo))
		for pos := lo; pos < hi; pos++ {
			ev := v.events.at(pos)
			e.i64(int64(ev.eventType()))
			e.kv(ev.kv)
			e.kv(ev.prev)
		}
		return e.err == nil
	})
	e.u64(uint64(len(v.alarms)))
	for _, a := range v.alarms {
		e.u64(a.MemberID)
		e.i64(int64(a.Type))
	}
	e.flush()
	if e.err != nil {
		return fmt.Errorf("writing snapshot at index %d: %w", v.index, e.err)
	}
	if _, err := w.Write(binary.BigEndian.AppendUint64(nil, e.crc.Sum64())); err != nil {
		return fmt.Errorf("writing snapshot checksum at index %d: %w", v.index, err)
	}
	return nil
}

// snapEncoder buffers output and checksums it as it is flushed.
type snapEncoder struct {
	w   io.Writer
	crc hash.Hash64
	buf []byte
	err error
}

func (e *snapEncoder) maybeFlush() {
	if len(e.buf) >= 64<<10 {
		e.flush()
	}
}

func (e *snapEncoder) flush() {
	if e.err != nil || len(e.buf) == 0 {
		return
	}
	e.crc.Write(e.buf)
	_, e.err = e.w.Write(e.buf)
	e.buf = e.buf[:0]
}

func (e *snapEncoder) u64(x uint64) { e.buf = binary.AppendUvarint(e.buf, x); e.maybeFlush() }
func (e *snapEncoder) i64(x int64)  { e.buf = binary.AppendVarint(e.buf, x); e.maybeFlush() }
func (e *snapEncoder) bytes(b []byte) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(b)))
	e.buf = append(e.buf, b...)
	e.maybeFlush()
}

func (e *snapEncoder) kv(r *record) {
	if r == nil {
		e.buf = append(e.buf, 0)
		return
	}
	f := r.decode()
	e.buf = append(e.buf, 1)
	e.bytes(f.key)
	e.i64(f.create)
	e.i64(f.mod)
	e.i64(f.ver)
	e.bytes(f.value)
	e.i64(f.lease)
}

// Restore replaces the whole state with a snapshot written by
// View.WriteSnapshot and publishes it. On error the store is unchanged.
func (s *Store) Restore(r io.Reader) error {
	w, err := readSnapshot(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
	s.publish()
	return nil
}

func readSnapshot(r io.Reader) (*writer, error) {
	d := &snapDecoder{r: bufio.NewReaderSize(r, 64<<10), crc: crc64.New(crcTable)}
	st, err := d.state()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	var sum [8]byte
	if _, err := io.ReadFull(d.r, sum[:]); err != nil {
		return nil, fmt.Errorf("%w: reading checksum: %w", ErrBadSnapshot, err)
	}
	if want, got := binary.BigEndian.Uint64(sum[:]), d.crc.Sum64(); want != got {
		return nil, fmt.Errorf("%w: checksum mismatch: stored %016x, computed %016x", ErrBadSnapshot, want, got)
	}
	if _, err := d.r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after checksum", ErrBadSnapshot)
	}
	return st, nil
}

// snapDecoder reads the fields WriteSnapshot writes, checksumming every
// byte it consumes (but not the trailing checksum itself).
type snapDecoder struct {
	r   *bufio.Reader
	crc hash.Hash64
	one [1]byte
}

func (d *snapDecoder) ReadByte() (byte, error) {
	b, err := d.r.ReadByte()
	if err != nil {
		return 0, err
	}
	d.one[0] = b
	d.crc.Write(d.one[:])
	return b, nil
}

func (d *snapDecoder) full(n int, what string) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(d.r, b); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, eofIsUnexpected(err))
	}
	d.crc.Write(b)
	return b, nil
}

func (d *snapDecoder) u64(what string) (uint64, error) {
	x, err := binary.ReadUvarint(d)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", what, eofIsUnexpected(err))
	}
	return x, nil
}

func (d *snapDecoder) i64(what string) (int64, error) {
	x, err := binary.ReadVarint(d)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", what, eofIsUnexpected(err))
	}
	return x, nil
}

func (d *snapDecoder) bytes(what string) ([]byte, error) {
	n, err := d.u64(what + " length")
	if err != nil {
		return nil, err
	}
	if n > maxSnapBytes {
		return nil, fmt.Errorf("reading %s: length %d exceeds %d", what, n, maxSnapBytes)
	}
	return d.full(int(n), what)
}

// kv reads a KeyValue as snapEncoder.kv writes it; ok is false for an
// absent one.
func (d *snapDecoder) kv(what string) (f fields, ok bool, err error) {
	flag, err := d.ReadByte()
	if err != nil {
		return f, false, fmt.Errorf("reading %s: %w", what, eofIsUnexpected(err))
	}
	switch flag {
	case 0:
		return f, false, nil
	case 1:
	default:
		return f, false, fmt.Errorf("reading %s: bad presence flag %d", what, flag)
	}
	if f.key, err = d.bytes(what + " key"); err != nil {
		return f, false, err
	}
	for _, fld := range []struct {
		name string
		p    *int64
	}{{"create revision", &f.create}, {"mod revision", &f.mod}, {"version", &f.ver}} {
		if *fld.p, err = d.i64(what + " " + fld.name); err != nil {
			return f, false, err
		}
	}
	if f.value, err = d.bytes(what + " value"); err != nil {
		return f, false, err
	}
	if f.lease, err = d.i64(what + " lease"); err != nil {
		return f, false, err
	}
	return f, true, nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (d *snapDecoder) state() (*writer, error) {
	hdr, err := d.full(len(snapMagic)+4, "header")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(hdr[:len(snapMagic)], []byte(snapMagic)) {
		return nil, fmt.Errorf("magic %q is not a keelson fsm snapshot", hdr[:len(snapMagic)])
	}
	ver := binary.BigEndian.Uint32(hdr[len(snapMagic):])
	if ver < 1 || ver > snapVersion {
		return nil, fmt.Errorf("unsupported snapshot format version %d (this build reads 1 to %d)", ver, snapVersion)
	}
	w := newWriter()
	if w.index, err = d.u64("index"); err != nil {
		return nil, err
	}
	if w.rev, err = d.i64("revision"); err != nil {
		return nil, err
	}
	if w.compactRev, err = d.i64("compact revision"); err != nil {
		return nil, err
	}
	if err := d.leases(w.leases.w); err != nil {
		return nil, err
	}
	if err := d.versions(w.versions.w); err != nil {
		return nil, err
	}
	if err := d.events(w); err != nil {
		return nil, err
	}
	if ver >= 2 {
		if w.alarms, err = d.alarms(); err != nil {
			return nil, err
		}
	}
	w.deriveCurrent()
	w.recomputeSize()
	return w, nil
}

func (d *snapDecoder) leases(t *btree.BTreeG[Lease]) error {
	n, err := d.u64("lease count")
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		var l Lease
		if l.ID, err = d.i64(fmt.Sprintf("lease %d id", i)); err != nil {
			return err
		}
		if l.TTL, err = d.i64(fmt.Sprintf("lease %d ttl", i)); err != nil {
			return err
		}
		t.Set(l)
	}
	return nil
}

func (d *snapDecoder) alarms() ([]Alarm, error) {
	n, err := d.u64("alarm count")
	if err != nil {
		return nil, err
	}
	var out []Alarm
	for i := uint64(0); i < n; i++ {
		var a Alarm
		if a.MemberID, err = d.u64(fmt.Sprintf("alarm %d member", i)); err != nil {
			return nil, err
		}
		t, err := d.i64(fmt.Sprintf("alarm %d type", i))
		if err != nil {
			return nil, err
		}
		a.Type = pb.AlarmType(t)
		if len(out) > 0 && alarmLess(out[len(out)-1], a) >= 0 {
			return nil, fmt.Errorf("alarm %d (%d, %s) out of order", i, a.MemberID, a.Type)
		}
		out = append(out, a)
	}
	return out, nil
}

func (d *snapDecoder) versions(t *kvTree) error {
	n, err := d.u64("version count")
	if err != nil {
		return err
	}
	for i := uint64(0); i < n; i++ {
		key, err := d.bytes("version key")
		if err != nil {
			return err
		}
		rev, err := d.i64(fmt.Sprintf("revision of version %q", key))
		if err != nil {
			return err
		}
		f, ok, err := d.kv(fmt.Sprintf("version %q@%d", key, rev))
		if err != nil {
			return err
		}
		switch {
		case !ok:
			f = fields{key: key, mod: rev} // tombstone
		case !bytes.Equal(f.key, key):
			return fmt.Errorf("version %q@%d holds key %q", key, rev, f.key)
		case f.mod != rev || f.ver < 1:
			return fmt.Errorf("version %q@%d has mod revision %d and version %d", key, rev, f.mod, f.ver)
		}
		t.Load(newRecord(f)) // appends in O(1) when the input is in order, as written
	}
	return nil
}

func (d *snapDecoder) events(w *writer) error {
	n, err := d.u64("event revision count")
	if err != nil {
		return err
	}
	last := int64(math.MinInt64)
	for i := uint64(0); i < n; i++ {
		rev, err := d.i64("event revision")
		if err != nil {
			return err
		}
		if rev <= last {
			return fmt.Errorf("event revision %d after %d", rev, last)
		}
		last = rev
		m, err := d.u64(fmt.Sprintf("event count at revision %d", rev))
		if err != nil {
			return err
		}
		if m == 0 {
			return fmt.Errorf("revision %d has no events", rev)
		}
		for j := uint64(0); j < m; j++ {
			if err := d.event(w, rev, fmt.Sprintf("event %d at revision %d", j, rev)); err != nil {
				return err
			}
		}
	}
	return nil
}

// event reads one event and appends it to w's log. Its type is read and
// checked but not kept: the log derives it from the Kv (a tombstone is a
// delete), as it always has.
func (d *snapDecoder) event(w *writer, rev int64, what string) error {
	typ, err := d.i64(what + " type")
	if err != nil {
		return err
	}
	kv, ok, err := d.kv(what + " kv")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s has no kv", what)
	}
	if want := int64(mvccpb.PUT); kv.ver == 0 {
		want = int64(mvccpb.DELETE)
		if typ != want {
			return fmt.Errorf("%s has type %d and a tombstone kv", what, typ)
		}
	} else if typ != want {
		return fmt.Errorf("%s has type %d and a live kv (version %d)", what, typ, kv.ver)
	}
	prev, hasPrev, err := d.kv(what + " prev kv")
	if err != nil {
		return err
	}
	var prevRec *record
	if hasPrev {
		prevRec = w.shared(prev)
	}
	w.events.append(rev, w.shared(kv), prevRec)
	return nil
}

// shared returns the retained version equal to f if there is one, so that
// a restored store holds each version once, as a live one does.
func (w *writer) shared(f fields) *record {
	r := newRecord(f)
	if v, ok := w.versions.w.Get(r); ok && bytes.Equal(v.b, r.b) {
		return v // records encode their fields canonically
	}
	return r
}

// deriveCurrent rebuilds the live keys (each key's newest version unless it
// is a tombstone) and the lease index from the versions.
func (w *writer) deriveCurrent() {
	cur, lk := w.current.mut(), w.leaseKeys.mut()
	var last *record
	finish := func() {
		if last == nil {
			return
		}
		if f := last.decode(); f.ver != 0 {
			cur.Load(last)
			if f.lease != 0 {
				lk.Set(leaseKey{f.lease, f.key})
			}
		}
	}
	w.versions.w.Scan(func(r *record) bool {
		if last != nil && !bytes.Equal(last.key(), r.key()) {
			finish()
		}
		last = r
		return true
	})
	finish()
}
