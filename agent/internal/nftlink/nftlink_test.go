package nftlink

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	v1 "k8s.io/api/core/v1"
)

func TestStale(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		prevChains, curChain []string
		prevSets, curSets    []string
		want                 []string
		chains               int
	}{
		{name: "nothing stale", prevChains: []string{"a"}, curChain: []string{"a"}, prevSets: []string{"s"}, curSets: []string{"s"}},
		{name: "new objects are not stale", curChain: []string{"a"}, curSets: []string{"s"}},
		{
			name:       "chains emptied before any is deleted, sets last",
			prevChains: []string{"svc-b", "svc-a", "keep"}, curChain: []string{"keep"},
			prevSets: []string{"s2", "s1"}, curSets: []string{"s1"},
			want:   []string{"flush chain svc-a", "flush chain svc-b", "delete chain svc-a", "delete chain svc-b", "delete set s2"},
			chains: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			n := Stale(keys(tc.prevChains), keys(tc.curChain), keys(tc.prevSets), keys(tc.curSets), func(verb, kind, name string) {
				got = append(got, verb+" "+kind+" "+name)
			})
			if !slices.Equal(got, tc.want) || n != tc.chains {
				t.Errorf("Stale = %q, %d chains; want %q, %d", got, n, tc.want, tc.chains)
			}
		})
	}
}

func keys(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n] = 1
	}
	return m
}

func TestTable(t *testing.T) {
	for f, want := range map[v1.IPFamily]nftables.TableFamily{
		v1.IPv4Protocol: nftables.TableFamilyIPv4, v1.IPv6Protocol: nftables.TableFamilyIPv6, "": nftables.TableFamilyIPv4,
	} {
		if got := Table(f, "keelson-x"); got.Family != want || got.Name != "keelson-x" {
			t.Errorf("Table(%q) = %s family %d, want family %d", f, got.Name, got.Family, want)
		}
	}
}

func TestPrefixMask(t *testing.T) {
	for p, want := range map[string][]byte{
		"10.0.0.0/8":      {0xff, 0, 0, 0},
		"10.244.1.0/23":   {0xff, 0xff, 0xfe, 0},
		"10.244.1.2/32":   {0xff, 0xff, 0xff, 0xff},
		"0.0.0.0/0":       {0, 0, 0, 0},
		"fd00:244:1::/52": {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	} {
		if got := PrefixMask(netip.MustParsePrefix(p)); !slices.Equal(got, want) {
			t.Errorf("PrefixMask(%s) = %x, want %x", p, got, want)
		}
	}
}

func TestProtoNumber(t *testing.T) {
	for proto, want := range map[string]byte{"tcp": 6, "udp": 17, "sctp": 132, "ipv6-icmp": 58, "": 6} {
		if got := ProtoNumber(proto); got != want {
			t.Errorf("ProtoNumber(%q) = %d, want %d", proto, got, want)
		}
	}
}
