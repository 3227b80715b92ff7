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
	v.versions.Scan(func(kv *mvccpb.KeyValue) bool {
		e.bytes(kv.Key)
		e.i64(kv.ModRevision)
		e.kv(liveOrNil(kv))
		return e.err == nil
	})
	e.u64(uint64(v.events.revisionCount()))
	v.events.revisions(func(rev int64, lo, hi int) bool {
		e.i64(rev)
		e.u64(uint64(hi - lo))
		for pos := lo; pos < hi; pos++ {
			ev := v.events.at(pos).event()
			e.i64(int64(ev.Type))
			e.kv(ev.Kv)
			e.kv(ev.PrevKv)
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

func (e *snapEncoder) kv(kv *mvccpb.KeyValue) {
	if kv == nil {
		e.buf = append(e.buf, 0)
		return
	}
	e.buf = append(e.buf, 1)
	e.bytes(kv.Key)
	e.i64(kv.CreateRevision)
	e.i64(kv.ModRevision)
	e.i64(kv.Version)
	e.bytes(kv.Value)
	e.i64(kv.Lease)
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

func (d *snapDecoder) kv(what string) (*mvccpb.KeyValue, error) {
	flag, err := d.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, eofIsUnexpected(err))
	}
	switch flag {
	case 0:
		return nil, nil
	case 1:
	default:
		return nil, fmt.Errorf("reading %s: bad presence flag %d", what, flag)
	}
	kv := &mvccpb.KeyValue{}
	if kv.Key, err = d.bytes(what + " key"); err != nil {
		return nil, err
	}
	if kv.CreateRevision, err = d.i64(what + " create revision"); err != nil {
		return nil, err
	}
	if kv.ModRevision, err = d.i64(what + " mod revision"); err != nil {
		return nil, err
	}
	if kv.Version, err = d.i64(what + " version"); err != nil {
		return nil, err
	}
	if kv.Value, err = d.bytes(what + " value"); err != nil {
		return nil, err
	}
	if kv.Lease, err = d.i64(what + " lease"); err != nil {
		return nil, err
	}
	return kv, nil
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
		kv, err := d.kv(fmt.Sprintf("version %q@%d", key, rev))
		if err != nil {
			return err
		}
		switch {
		case kv == nil:
			kv = &mvccpb.KeyValue{Key: key, ModRevision: rev} // tombstone
		case !bytes.Equal(kv.Key, key):
			return fmt.Errorf("version %q@%d holds key %q", key, rev, kv.Key)
		case kv.ModRevision != rev || kv.Version < 1:
			return fmt.Errorf("version %q@%d has mod revision %d and version %d", key, rev, kv.ModRevision, kv.Version)
		}
		t.Load(kv) // appends in O(1) when the input is in order, as written
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
			what := fmt.Sprintf("event %d at revision %d", j, rev)
			typ, err := d.i64(what + " type")
			if err != nil {
				return err
			}
			ev := Event{Type: mvccpb.Event_EventType(typ)}
			if ev.Kv, err = d.kv(what + " kv"); err != nil {
				return err
			}
			if ev.Kv == nil {
				return fmt.Errorf("%s has no kv", what)
			}
			if ev.PrevKv, err = d.kv(what + " prev kv"); err != nil {
				return err
			}
			ev.Kv = w.shared(ev.Kv)
			ev.PrevKv = w.shared(ev.PrevKv)
			w.events.append(rev, ev)
		}
	}
	return nil
}

// shared returns the retained version equal to kv if there is one, so that
// a restored store holds each KeyValue once, as a live one does.
func (w *writer) shared(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	v, ok := w.versions.w.Get(kv)
	if !ok || !sameKV(v, kv) {
		return kv
	}
	return v
}

func sameKV(a, b *mvccpb.KeyValue) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.CreateRevision == b.CreateRevision &&
		a.ModRevision == b.ModRevision && a.Version == b.Version && a.Lease == b.Lease
}

// deriveCurrent rebuilds the live keys (each key's newest version unless it
// is a tombstone) and the lease index from the versions.
func (w *writer) deriveCurrent() {
	cur, lk := w.current.mut(), w.leaseKeys.mut()
	var last *mvccpb.KeyValue
	finish := func() {
		if last != nil && !isTombstone(last) {
			cur.Load(last)
			if last.Lease != 0 {
				lk.Set(leaseKey{last.Lease, last.Key})
			}
		}
	}
	w.versions.w.Scan(func(kv *mvccpb.KeyValue) bool {
		if last != nil && !bytes.Equal(last.Key, kv.Key) {
			finish()
		}
		last = kv
		return true
	})
	finish()
}
