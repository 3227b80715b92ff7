package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

func addrPorts(ips ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ips))
	for i, ip := range ips {
		out[i] = netip.AddrPortFrom(netip.MustParseAddr(ip), 8080)
	}
	return out
}

func TestNFTBlocksKeepEndpointsInPlace(t *testing.T) {
	b := newNFTBlocks()
	if _, _, err := b.place("other", addrPorts("10.0.9.1")); err != nil { // index 0
		t.Fatal(err)
	}
	start, slots, err := b.place("web", addrPorts("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"))
	if err != nil || start != 8 {
		t.Fatalf("five endpoints placed at %d (%v), want the first free aligned block of 8: 8", start, err)
	}
	// One endpoint replaced: the block stays, the others keep their
	// indexes, the new one takes the freed index.
	start2, slots2, _ := b.place("web", addrPorts("10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"))
	want := slices.Clone(slots)
	want[1] = netip.MustParseAddrPort("10.0.0.6:8080")
	if start2 != start || !slices.Equal(slots2, want) {
		t.Errorf("after a replacement: %d %v, want %d %v", start2, slots2, start, want)
	}
	// Growing within the block keeps it; the new endpoint goes last.
	start3, slots3, _ := b.place("web", addrPorts("10.0.0.1", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7"))
	if start3 != start || !slices.Equal(slots3[:5], want) || slots3[5] != netip.MustParseAddrPort("10.0.0.7:8080") {
		t.Errorf("after growing to 6: %d %v", start3, slots3)
	}
	// Growing past it moves; shrinking to a quarter gives space back.
	if start4, _, _ := b.place("web", addrPorts("1.0.0.1", "1.0.0.2", "1.0.0.3", "1.0.0.4", "1.0.0.5", "1.0.0.6", "1.0.0.7", "1.0.0.8", "1.0.0.9")); start4 != 16 {
		t.Errorf("nine endpoints at %d, want 16 (a block of 16)", start4)
	}
	if start5, _, _ := b.place("web", addrPorts("1.0.0.1", "1.0.0.2")); start5 != 2 {
		t.Errorf("two endpoints at %d, want 2 (the lowest free pair)", start5)
	}
	b.release("web")
	b.release("other")
	assertAllFree(t, b)
}

// assertAllFree checks that every freed block merged back into one.
func assertAllFree(t *testing.T, b *nftBlocks) {
	t.Helper()
	for o, free := range b.free {
		if o == nftBlocksOrder && !slices.Equal(free, []uint32{0}) || o < nftBlocksOrder && len(free) > 0 {
			t.Fatalf("all released, free blocks of order %d: %v, want the whole space in one block", o, free)
		}
	}
}

// TestNFTBlocksReuseSpaceAcrossSyncs resizes, adds and removes owners at
// random: blocks never overlap, freed space is reused (the indexes stay
// within a small multiple of what is in use) and, all released, merges
// back into one block.
func TestNFTBlocksReuseSpaceAcrossSyncs(t *testing.T) {
	b := newNFTBlocks()
	r := rand.New(rand.NewPCG(1, 2))
	sizes := map[string]int{}
	maxEnd, maxLive := uint32(0), 0
	for round := range 5000 {
		owner := fmt.Sprintf("o%d", r.IntN(200))
		n := r.IntN(12)
		if r.IntN(20) == 0 {
			n = 1 + r.IntN(100)
		}
		eps := make([]netip.AddrPort, n)
		for i := range eps {
			eps[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(round >> 8), byte(round), byte(i)}), 80)
		}
		if _, _, err := b.place(owner, eps); err != nil {
			t.Fatal(err)
		}
		sizes[owner] = n
		used := map[uint32]string{}
		live := 0
		for o, blk := range b.owned {
			if len(blk.slots) != sizes[o] || len(blk.slots) > 1<<blk.order || blk.start%(1<<blk.order) != 0 {
				t.Fatalf("round %d: %s has %d slots in a block of order %d at %d, want %d", round, o, len(blk.slots), blk.order, blk.start, sizes[o])
			}
			for i := range uint32(1) << blk.order {
				if other, ok := used[blk.start+i]; ok {
					t.Fatalf("round %d: index %d is %s's and %s's", round, blk.start+i, other, o)
				}
				used[blk.start+i] = o
			}
			live += 1 << blk.order
		}
		maxEnd, maxLive = max(maxEnd, b.end()), max(maxLive, live)
	}
	if maxEnd > uint32(2*maxLive) {
		t.Errorf("indexes reached %d with at most %d in use: freed space is not reused", maxEnd, maxLive)
	}
	for o := range sizes {
		b.release(o)
	}
	assertAllFree(t, b)
}

// nftModel is what the kernel would hold after the batches applied to
// it: the rules of each chain, the endpoints map and the hairpin set. An
// element added twice or deleted while absent fails, as in the kernel.
type nftModel struct {
	chains    map[string][]string
	endpoints map[string]string
	hairpin   map[string]bool
}

func (m *nftModel) apply(t *testing.T, b NFTBatch) {
	t.Helper()
	for _, o := range b.Ops {
		switch o.verb + " " + o.kind {
		case "add chain":
			m.chains[o.name] = nil
		case "flush chain":
			m.chains[o.name] = nil
		case "delete chain":
			delete(m.chains, o.name)
		case "add rule":
			m.chains[o.name] = append(m.chains[o.name], o.rule.Text)
		case "add element", "delete element":
			for _, e := range o.elems {
				switch {
				case strings.HasPrefix(o.name, nftEndpointsPrefix) && o.verb == "add":
					if _, ok := m.endpoints[o.name+"/"+e.key]; ok {
						t.Fatalf("%s[%s] added twice:\n%s", o.name, e.key, b.Text())
					}
					m.endpoints[o.name+"/"+e.key] = e.value
				case strings.HasPrefix(o.name, nftEndpointsPrefix):
					if _, ok := m.endpoints[o.name+"/"+e.key]; !ok {
						t.Fatalf("%s[%s] deleted while absent:\n%s", o.name, e.key, b.Text())
					}
					delete(m.endpoints, o.name+"/"+e.key)
				case o.name == nftHairpin:
					if m.hairpin[e.key] == (o.verb == "add") {
						t.Fatalf("hairpin %s: %s, but it is already (or is not)\n%s", e.key, o.verb, b.Text())
					}
					m.hairpin[e.key] = o.verb == "add"
				}
			}
		}
	}
}

var dnatMapRE = regexp.MustCompile(`numgen random mod (\d+) offset (\d+) map @(endpoints-\d+)$`)

// picks are the endpoints each chain's DNAT picks from, sorted.
func (m *nftModel) picks(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for c, rules := range m.chains {
		for _, r := range rules {
			sm := dnatMapRE.FindStringSubmatch(r)
			if sm == nil {
				continue
			}
			n, _ := strconv.Atoi(sm[1])
			start, _ := strconv.Atoi(sm[2])
			for i := range n {
				v, ok := m.endpoints[sm[3]+"/"+strconv.Itoa(start+i)]
				if !ok {
					t.Fatalf("chain %s picks index %d, which map %s does not hold", c, start+i, sm[3])
				}
				out[c] = append(out[c], v)
			}
			slices.Sort(out[c])
		}
	}
	return out
}

// TestNFTSyncsKeepTheEndpointsMapRight runs many syncs by difference over
// services whose endpoints are replaced, added and removed, and services
// created and deleted, applying each batch to a model of the kernel: each
// service chain always picks exactly its endpoints, the hairpin set holds
// exactly the endpoints in use, and a replacement that keeps the count
// writes endpoints-map and hairpin elements and nothing else.
func TestNFTSyncsKeepTheEndpointsMapRight(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const nSvc = 20
	eps := map[int][]string{}
	next := 0
	newIP := func() string { next++; return fmt.Sprintf("10.244.%d.%d", next/250, next%250+1) }
	for i := range nSvc {
		for range 1 + r.IntN(5) {
			eps[i] = append(eps[i], newIP())
		}
	}
	// Two services share a pod: its hairpin element stays while either
	// uses it.
	eps[1] = append(eps[1], eps[0][0])
	view := func() *portView {
		var services []*v1.Service
		var sl []*discovery.EndpointSlice
		for i := range nSvc {
			if eps[i] == nil {
				continue // deleted
			}
			name := fmt.Sprintf("s%d", i)
			services = append(services, svc("default", name, fmt.Sprintf("10.96.0.%d", i+1)))
			var e []ep
			for _, ip := range eps[i] {
				e = append(e, readyEP(ip, "n1"))
			}
			sl = append(sl, slice("default", name, name+"-1", 8080, e...))
		}
		ports, _ := Snapshot(services, sl, "n1", v1.IPv4Protocol)
		return viewOf(ports)
	}
	claims, installed := nftClaims{}, newNFTInstalled()
	model := &nftModel{chains: map[string][]string{}, endpoints: map[string]string{}, hairpin: map[string]bool{}}
	p := mustPlan(t, installed, claims, view())
	model.apply(t, p.batch)
	p.commit(installed, claims)
	for round := range 400 {
		i := r.IntN(nSvc)
		kind := "replace"
		switch k := r.IntN(10); {
		case eps[i] == nil:
			kind = "create"
			eps[i] = []string{newIP()}
		case k == 0:
			kind = "delete"
			eps[i] = nil
		case k < 3:
			kind = "add"
			eps[i] = append(eps[i], newIP())
		case k < 5 && len(eps[i]) > 1:
			kind = "remove"
			j := r.IntN(len(eps[i]))
			eps[i] = slices.Delete(eps[i], j, j+1)
		default:
			eps[i] = slices.Clone(eps[i])
			eps[i][r.IntN(len(eps[i]))] = newIP()
		}
		p := mustPlan(t, installed, claims, view())
		if p.shared {
			t.Fatalf("round %d: a change planned as a full sync", round)
		}
		model.apply(t, p.batch)
		p.commit(installed, claims)
		if kind == "replace" {
			for _, o := range p.batch.Ops[1:] {
				if o.kind != "element" || !strings.HasPrefix(o.name, nftEndpointsPrefix) && o.name != nftHairpin {
					t.Fatalf("round %d: replacing an endpoint of s%d wrote more than elements:\n%s", round, i, p.batch.Text())
				}
			}
			if p.batch.Elements > 4 {
				t.Fatalf("round %d: replacing one endpoint wrote %d elements:\n%s", round, p.batch.Elements, p.batch.Text())
			}
		}
		picks, inUse := model.picks(t), map[string]bool{}
		for s := range nSvc {
			var want []string
			for _, ip := range eps[s] {
				want = append(want, ip+" . 8080")
				inUse[ip+" . "+ip] = true
			}
			slices.Sort(want)
			var got []string
			for c, p := range picks {
				if strings.Contains(c, fmt.Sprintf("default/s%d/", s)) {
					got = p
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d (%s s%d): s%d picks from %v, want %v", round, kind, i, s, got, want)
			}
		}
		for e, in := range model.hairpin {
			if in != inUse[e] {
				t.Fatalf("round %d: hairpin holds %s: %v, in use: %v", round, e, in, inUse[e])
			}
		}
		for e := range inUse {
			if !model.hairpin[e] {
				t.Fatalf("round %d: hairpin lacks %s", round, e)
			}
		}
	}
	if n := len(model.endpoints); n != installed.blocks.live() {
		t.Errorf("the endpoints map holds %d elements, the blocks %d endpoints", n, installed.blocks.live())
	}
}

// TestNFTEndpointCountChangeRewritesTheRule: a count change rewrites the
// service chain's one rule (mod n), and the block moves only when it must.
func TestNFTEndpointCountChangeRewritesTheRule(t *testing.T) {
	services := []*v1.Service{svc("default", "web", "10.96.0.20")}
	claims, installed := nftClaims{}, newNFTInstalled()
	sync := func(ips ...string) (NFTBatch, string) {
		var e []ep
		for _, ip := range ips {
			e = append(e, readyEP(ip, "n1"))
		}
		ports, _ := Snapshot(services, []*discovery.EndpointSlice{slice("default", "web", "web-1", 8080, e...)}, "n1", v1.IPv4Protocol)
		p := mustPlan(t, installed, claims, viewOf(ports))
		p.commit(installed, claims)
		for _, st := range installed.ports {
			for c, rules := range st.part.Chains {
				if strings.HasPrefix(c, nftSvcPrefix) {
					return p.batch, rules[len(rules)-1].Text
				}
			}
		}
		t.Fatal("no service chain")
		return p.batch, ""
	}
	sync("10.244.1.1", "10.244.1.2")
	b, rule := sync("10.244.1.1", "10.244.1.2", "10.244.1.3")
	// The block of 2 at 0, freed, merges with its free buddy: the block
	// of 4 is at 0 again, and the two endpoints there are not rewritten.
	if !strings.HasSuffix(rule, "mod 3 offset 0 map @endpoints-0") || b.Chains != 1 || b.Elements != 2 ||
		!strings.Contains(b.Text(), "add element ip keelson endpoints-0 { 2 : 10.244.1.3 . 8080 }") {
		t.Errorf("two endpoints to three: %q (%d chains), want a block of 4 at 0, one element and its hairpin added\n%s", rule, b.Chains, b.Text())
	}
	b, rule = sync("10.244.1.1", "10.244.1.2", "10.244.1.3", "10.244.1.4")
	if !strings.HasSuffix(rule, "mod 4 offset 0 map @endpoints-0") || b.Chains != 1 ||
		!strings.Contains(b.Text(), "add element ip keelson endpoints-0 { 3 : 10.244.1.4 . 8080 }") || strings.Contains(b.Text(), "delete element ip keelson endpoints") {
		t.Errorf("three endpoints to four: %q, want the same block, one element added:\n%s", rule, b.Text())
	}
	if b, rule = sync("10.244.1.4"); !strings.HasSuffix(rule, "mod 1 offset 0 map @endpoints-0") ||
		!strings.Contains(b.Text(), "delete element ip keelson endpoints-0 { 0, 1, 2, 3 }") ||
		!strings.Contains(b.Text(), "add element ip keelson endpoints-0 { 0 : 10.244.1.4 . 8080 }") {
		t.Errorf("four endpoints to one: %q, want a block of 1 at 0 (space given back):\n%s", rule, b.Text())
	}
}
