package proxy

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
)

// nftBlocks hands out the indexes of the table's endpoints map. Each
// balance without ClientIP affinity (a service port's cluster or local
// pick) owns a block of consecutive indexes [start, start+n), one per
// endpoint, and its rule reads "numgen random mod n offset start". A block
// is kept across syncs while its endpoint count fits, and an endpoint
// keeps its index while it stays, so that replacing an endpoint rewrites
// one map element and no rule (a rule, unlike a data-map element, makes
// the kernel validate the whole table at commit).
//
// Blocks are buddies: sizes are powers of two, aligned to their size, and
// a freed block merges with its free buddy, so the space freed by removed
// or resized services is reused and the indexes stay near zero.
type nftBlocks struct {
	owned map[string]*nftBlock
	// free holds, by order (log2 of the size), the starts of free blocks,
	// sorted: the lowest is taken first.
	free [nftBlocksOrder + 1][]uint32
}

// nftBlocksOrder bounds the index space: 2^31 indexes.
const nftBlocksOrder = 31

// nftBlock is one owner's block; slots[i] is the endpoint at start+i.
type nftBlock struct {
	start uint32
	order int
	slots []netip.AddrPort
}

func newNFTBlocks() *nftBlocks {
	b := &nftBlocks{owned: map[string]*nftBlock{}}
	b.free[nftBlocksOrder] = []uint32{0}
	return b
}

// orderOf is the order of the smallest block that holds n (n >= 1).
func orderOf(n int) int { return bits.Len(uint(n - 1)) }

// place gives owner's endpoints eps their indexes: the block's start and
// the endpoint at each index from it. The owner keeps its block while eps
// fit it and fill more than a quarter of it (a shrunk service gives space
// back, a service whose count goes up and down by one does not move); an
// endpoint already placed within the first len(eps) slots stays there and
// the others fill the free slots in order.
func (b *nftBlocks) place(owner string, eps []netip.AddrPort) (uint32, []netip.AddrPort, error) {
	n := len(eps)
	if n == 0 {
		b.release(owner)
		return 0, nil, nil
	}
	blk := b.owned[owner]
	if blk != nil && (n > 1<<blk.order || n*4 <= 1<<blk.order) {
		b.release(owner)
		blk = nil
	}
	if blk == nil {
		start, err := b.alloc(orderOf(n))
		if err != nil {
			return 0, nil, fmt.Errorf("nftables: endpoints map: %d endpoints of %s: %w", n, owner, err)
		}
		blk = &nftBlock{start: start, order: orderOf(n)}
		b.owned[owner] = blk
	}
	want := map[netip.AddrPort]int{}
	for _, ep := range eps {
		want[ep]++
	}
	slots := make([]netip.AddrPort, n)
	kept := make([]bool, n)
	for i := 0; i < n && i < len(blk.slots); i++ {
		if ep := blk.slots[i]; want[ep] > 0 {
			slots[i], kept[i] = ep, true
			want[ep]--
		}
	}
	next := 0
	for _, ep := range eps {
		if want[ep] == 0 {
			continue
		}
		want[ep]--
		for kept[next] {
			next++
		}
		slots[next], kept[next] = ep, true
	}
	blk.slots = slots
	return blk.start, slots, nil
}

// release frees owner's block, if it has one.
func (b *nftBlocks) release(owner string) {
	blk := b.owned[owner]
	if blk == nil {
		return
	}
	delete(b.owned, owner)
	start, order := blk.start, blk.order
	for order < nftBlocksOrder {
		buddy := start ^ (1 << order)
		i, ok := slices.BinarySearch(b.free[order], buddy)
		if !ok {
			break
		}
		b.free[order] = slices.Delete(b.free[order], i, i+1)
		start &^= 1 << order
		order++
	}
	i, _ := slices.BinarySearch(b.free[order], start)
	b.free[order] = slices.Insert(b.free[order], i, start)
}

// alloc takes the lowest free block of the order, splitting a larger one
// if none is free.
func (b *nftBlocks) alloc(order int) (uint32, error) {
	o := order
	for o <= nftBlocksOrder && len(b.free[o]) == 0 {
		o++
	}
	if o > nftBlocksOrder {
		return 0, fmt.Errorf("no free block of %d indexes left", 1<<order)
	}
	start := b.free[o][0]
	b.free[o] = b.free[o][1:]
	for o > order {
		o--
		upper := start + 1<<o
		i, _ := slices.BinarySearch(b.free[o], upper)
		b.free[o] = slices.Insert(b.free[o], i, upper)
	}
	return start, nil
}

// end is one past the highest index in use (0 when none is).
func (b *nftBlocks) end() uint32 {
	var end uint32
	for _, blk := range b.owned {
		end = max(end, blk.start+uint32(len(blk.slots)))
	}
	return end
}

// live counts the endpoints placed.
func (b *nftBlocks) live() int {
	n := 0
	for _, blk := range b.owned {
		n += len(blk.slots)
	}
	return n
}
