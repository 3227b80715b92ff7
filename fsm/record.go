package fsm

import (
	"bytes"
	"encoding/binary"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// record is one version of one key as the store holds it: the key, its
// revisions, version, lease and value encoded in a single byte slice,
//
//	uvarint(len(key)) key varint(mod) varint(create) varint(version) varint(lease) value
//
// The trees and the event log point at records; a mvccpb.KeyValue (120
// bytes of generated struct, with separately allocated key and value) is
// made only for what leaves the package. For a 256-byte value this is 320
// bytes of heap where the KeyValue, key and value were 392, and the bytes
// hold no pointers, so the collector does not scan them.
//
// Records are immutable once made. The key and value slices handed out
// alias the record and must be treated as read-only, as KeyValues handed out
// always were.
type record struct{ b []byte }

// fields is a record decoded: what the read and write paths compare.
type fields struct {
	key, value              []byte
	create, mod, ver, lease int64
}

// newRecord encodes f in one allocation of the exact size.
func newRecord(f fields) *record {
	n := uvarintLen(uint64(len(f.key))) + len(f.key) + varintLen(f.mod) + varintLen(f.create) +
		varintLen(f.ver) + varintLen(f.lease) + len(f.value)
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(f.key)))
	b = append(b, f.key...)
	b = binary.AppendVarint(b, f.mod)
	b = binary.AppendVarint(b, f.create)
	b = binary.AppendVarint(b, f.ver)
	b = binary.AppendVarint(b, f.lease)
	b = append(b, f.value...)
	return &record{b: b}
}

// tombstone is the version a delete of key at rev leaves (Version 0, the
// delete event's Kv).
func tombstone(key []byte, rev int64) *record {
	return newRecord(fields{key: key, mod: rev})
}

// setProbe makes r a search item for key at revision mod, reusing its
// buffer. Only key and mod are encoded: the comparators read nothing else.
func (r *record) setProbe(key []byte, mod int64) {
	b := binary.AppendUvarint(r.b[:0], uint64(len(key)))
	b = append(b, key...)
	r.b = binary.AppendVarint(b, mod)
}

// key returns the record's key without decoding anything else.
func (r *record) key() []byte {
	n, k := binary.Uvarint(r.b)
	end := k + int(n)
	return r.b[k:end:end]
}

// mod returns the revision that wrote the record.
func (r *record) mod() int64 {
	n, k := binary.Uvarint(r.b)
	mod, _ := binary.Varint(r.b[k+int(n):])
	return mod
}

// decode returns every field. The record was encoded by newRecord, so the
// varints are well formed.
func (r *record) decode() fields {
	var f fields
	f.key = r.key()
	rest := r.b[len(f.key)+uvarintLen(uint64(len(f.key))):]
	for _, p := range []*int64{&f.mod, &f.create, &f.ver, &f.lease} {
		x, k := binary.Varint(rest)
		*p, rest = x, rest[k:]
	}
	if len(rest) > 0 { // nil otherwise, as a tombstone's Value always was
		f.value = rest[:len(rest):len(rest)]
	}
	return f
}

// varintLen is the length of binary.AppendVarint's encoding of x.
func varintLen(x int64) int {
	u := uint64(x) << 1
	if x < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// uvarintLen is the length of binary.AppendUvarint's encoding of x.
func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// isTombstone reports whether a version records a delete. Every put makes
// Version >= 1, so Version 0 only appears on tombstones.
func (r *record) isTombstone() bool { return r.decode().ver == 0 }

// kv returns the record as a fresh KeyValue sharing its key and value
// bytes, or nil for a nil record.
func (r *record) kv() *mvccpb.KeyValue {
	if r == nil {
		return nil
	}
	return r.decode().kv()
}

// kv returns the fields as a fresh KeyValue sharing their byte slices.
func (f fields) kv() *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: f.key, Value: f.value, CreateRevision: f.create, ModRevision: f.mod, Version: f.ver, Lease: f.lease}
}

// liveOrNil maps a tombstone to nil, the "no value" of the read paths.
func liveOrNil(r *record) *record {
	if r.isTombstone() {
		return nil
	}
	return r
}

// size is the record's accounted size (see quota.go).
func (f fields) size() int64 { return VersionCost(f.key, f.value) }

func byKey(a, b *record) bool { return bytes.Compare(a.key(), b.key()) < 0 }

// byKeyRev orders versions by (key, revision): the revision of a version
// is the mod revision of its record.
func byKeyRev(a, b *record) bool {
	if c := bytes.Compare(a.key(), b.key()); c != 0 {
		return c < 0
	}
	return a.mod() < b.mod()
}
