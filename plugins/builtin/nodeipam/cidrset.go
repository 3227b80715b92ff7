package nodeipam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

// maxSubnetBits bounds a cluster range to 2^16 node ranges, as upstream's
// allocator does: the set is a bitmap held in memory.
const maxSubnetBits = 16

// errFull says every node range of a cluster range is taken.
var errFull = errors.New("no node CIDR left")

// cidrSet hands out the node-sized ranges (e.g. /24s) of one cluster range
// (e.g. a /16), never the same one twice until it is released.
type cidrSet struct {
	cluster netip.Prefix
	mask    int    // node range prefix length
	used    []bool // by node range index
	free    int
	// next is where the search for a free range starts: just after the
	// last one handed out, so a released range is not handed out again at
	// once (a node that just left may still have routes to it).
	next int
}

func newCIDRSet(cluster netip.Prefix, mask int) (*cidrSet, error) {
	bits := mask - cluster.Bits()
	switch {
	case mask > cluster.Addr().BitLen():
		return nil, fmt.Errorf("node CIDR mask size /%d is longer than an address", mask)
	case bits < 0:
		return nil, fmt.Errorf("node CIDR mask size /%d is larger than the cluster CIDR %s", mask, cluster)
	case bits > maxSubnetBits:
		return nil, fmt.Errorf("node CIDR mask size /%d splits the cluster CIDR %s into 2^%d ranges; at most 2^%d are supported, use a mask of at most /%d",
			mask, cluster, bits, maxSubnetBits, cluster.Bits()+maxSubnetBits)
	}
	n := 1 << bits
	return &cidrSet{cluster: cluster.Masked(), mask: mask, used: make([]bool, n), free: n}, nil
}

// allocate hands out the next free node range.
func (s *cidrSet) allocate() (netip.Prefix, error) {
	for i := range len(s.used) {
		idx := (s.next + i) % len(s.used)
		if !s.used[idx] {
			s.used[idx] = true
			s.free--
			s.next = (idx + 1) % len(s.used)
			return s.prefixAt(idx), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w in %s (%d ranges of /%d, all in use)", errFull, s.cluster, len(s.used), s.mask)
}

// occupy marks every node range that overlaps p as taken (a node's existing
// range, or the service range kept out of the pod ranges). It reports
// false when p does not overlap the cluster range at all.
func (s *cidrSet) occupy(p netip.Prefix) bool { return s.mark(p, true) }

// release frees every node range that overlaps p.
func (s *cidrSet) release(p netip.Prefix) bool { return s.mark(p, false) }

func (s *cidrSet) mark(p netip.Prefix, used bool) bool {
	first, last, ok := s.indexes(p)
	if !ok {
		return false
	}
	for i := first; i <= last; i++ {
		if s.used[i] != used {
			s.used[i] = used
			if used {
				s.free--
			} else {
				s.free++
			}
		}
	}
	return true
}

// indexes returns the range of node range indexes p overlaps.
func (s *cidrSet) indexes(p netip.Prefix) (first, last int, ok bool) {
	p = p.Masked()
	if p.Addr().Is4() != s.cluster.Addr().Is4() || !p.Overlaps(s.cluster) {
		return 0, 0, false
	}
	if p.Bits() <= s.cluster.Bits() { // p covers the whole cluster range
		return 0, len(s.used) - 1, true
	}
	first = s.index(p.Addr())
	if p.Bits() >= s.mask { // inside one node range
		return first, first, true
	}
	return first, first + 1<<(s.mask-p.Bits()) - 1, true
}

// index is the node range holding addr, which lies in the cluster range.
func (s *cidrSet) index(addr netip.Addr) int {
	shift := uint(addr.BitLen() - s.mask)
	off := new(big.Int).Sub(toInt(addr), toInt(s.cluster.Addr()))
	return int(off.Rsh(off, shift).Int64())
}

func (s *cidrSet) prefixAt(idx int) netip.Prefix {
	base := s.cluster.Addr()
	off := new(big.Int).Lsh(big.NewInt(int64(idx)), uint(base.BitLen()-s.mask))
	return netip.PrefixFrom(fromInt(new(big.Int).Add(toInt(base), off), base.Is4()), s.mask)
}

func toInt(a netip.Addr) *big.Int {
	b := a.AsSlice()
	return new(big.Int).SetBytes(b)
}

func fromInt(i *big.Int, v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		i.FillBytes(b[:])
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	i.FillBytes(b[:])
	return netip.AddrFrom16(b)
}
