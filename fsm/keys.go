package fsm

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// Byte layouts of the state's entries. The state is held in typed trees,
// but Hash digests these byte keys, whose byte order is the iteration
// order, so the digest is independent of the in-memory layout.

// verTerm ends an escaped key inside a version key. 0x00 inside a user key
// is escaped to 0x00 0xFF, so 0x00 0x01 can only be the terminator, and a
// key that is a prefix of another sorts first (0x01 < 0xFF and 0x00 < any
// other byte). This keeps version keys ordered by (key, revision), the
// order of the versions tree.
var verTerm = [2]byte{0x00, 0x01}

// escapeKey appends the escaped form of key plus the terminator to dst.
func escapeKey(dst, key []byte) []byte {
	for _, b := range key {
		if b == 0x00 {
			dst = append(dst, 0x00, 0xFF)
			continue
		}
		dst = append(dst, b)
	}
	return append(dst, verTerm[0], verTerm[1])
}

// appendVersionKey appends the byte key of key's version at rev to dst.
func appendVersionKey(dst, key []byte, rev int64) []byte {
	return binary.BigEndian.AppendUint64(escapeKey(dst, key), uint64(rev))
}

// appendLeaseKeyKey appends the byte key attaching key to lease id (IDs
// are positive, so byte order is numeric order).
func appendLeaseKeyKey(dst []byte, id int64, key []byte) []byte {
	return append(binary.BigEndian.AppendUint64(dst, uint64(id)), key...)
}

// span is a key interval in etcd's notation, normalized: single means just
// key; otherwise [key, end) with end == nil meaning unbounded.
type span struct {
	key    []byte
	end    []byte
	single bool
}

// newSpan interprets etcd's (key, range_end): empty range_end is one key,
// "\x00" is every key >= key.
func newSpan(key, end []byte) span {
	switch {
	case len(end) == 0:
		return span{key: key, single: true}
	case len(end) == 1 && end[0] == 0:
		return span{key: key}
	default:
		return span{key: key, end: end}
	}
}

// contains reports whether k is in the span.
func (s span) contains(k []byte) bool {
	if s.single {
		return bytes.Equal(k, s.key)
	}
	if bytes.Compare(k, s.key) < 0 {
		return false
	}
	return s.end == nil || bytes.Compare(k, s.end) < 0
}

// beyond reports whether k (visited in ascending order) is past the span,
// so a scan can stop.
func (s span) beyond(k []byte) bool {
	if s.single {
		return bytes.Compare(k, s.key) > 0
	}
	return s.end != nil && bytes.Compare(k, s.end) >= 0
}

// sortedKeys returns a set's keys in byte order, so that nothing depends on
// map iteration order.
func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
