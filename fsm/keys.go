package fsm

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// Tree key layouts. Every tree is ordered by its byte keys, so the encodings
// below are chosen so that byte order is the order we iterate in.

// verTerm ends an escaped key inside a versions-tree key. 0x00 inside a user
// key is escaped to 0x00 0xFF, so 0x00 0x01 can only be the terminator, and a
// key that is a prefix of another sorts first (0x01 < 0xFF and 0x00 < any
// other byte). This keeps the versions tree ordered by (key, revision).
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

// unescapeKey reverses escapeKey on a group prefix (escaped key plus
// terminator). ok is false when group is not a valid escaped key.
func unescapeKey(group []byte) (key []byte, ok bool) {
	if len(group) < 2 || group[len(group)-2] != verTerm[0] || group[len(group)-1] != verTerm[1] {
		return nil, false
	}
	body := group[:len(group)-2]
	key = make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		if body[i] != 0x00 {
			key = append(key, body[i])
			continue
		}
		if i+1 >= len(body) || body[i+1] != 0xFF {
			return nil, false
		}
		key = append(key, 0x00)
		i++
	}
	return key, true
}

// versionKey is the versions-tree key of key at revision rev.
func versionKey(key []byte, rev int64) []byte {
	k := escapeKey(make([]byte, 0, len(key)+10), key)
	return binary.BigEndian.AppendUint64(k, uint64(rev))
}

// splitVersionKey returns the group (escaped key plus terminator) and the
// revision of a versions-tree key.
func splitVersionKey(vk []byte) (group []byte, rev int64) {
	if len(vk) < 10 {
		return vk, 0
	}
	n := len(vk) - 8
	return vk[:n], int64(binary.BigEndian.Uint64(vk[n:]))
}

// revKey is the events-tree key of a revision.
func revKey(rev int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(rev))
}

// idKey is the leases-tree key of a lease ID (IDs are positive, so byte
// order is numeric order).
func idKey(id int64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), uint64(id))
}

// leaseKeyKey is the lease-index key attaching key to lease id.
func leaseKeyKey(id int64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(id))
	return append(k, key...)
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
