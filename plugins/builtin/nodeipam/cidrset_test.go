package nodeipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustSet(t *testing.T, cluster string, mask int) *cidrSet {
	t.Helper()
	s, err := newCIDRSet(netip.MustParsePrefix(cluster), mask)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func allocN(t *testing.T, s *cidrSet, n int) []string {
	t.Helper()
	var out []string
	for range n {
		p, err := s.allocate()
		if err != nil {
			t.Fatalf("allocate: %v", err)
		}
		out = append(out, p.String())
	}
	return out
}

func TestCIDRSetAllocates(t *testing.T) {
	tests := []struct {
		cluster string
		mask    int
		want    []string
	}{
		{"10.42.0.0/16", 24, []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"}},
		{"10.42.0.0/16", 26, []string{"10.42.0.0/26", "10.42.0.64/26", "10.42.0.128/26"}},
		{"10.0.0.0/8", 24, []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"}},
		{"fd42::/56", 64, []string{"fd42::/64", "fd42:0:0:1::/64", "fd42:0:0:2::/64"}},
		{"fd42::/48", 64, []string{"fd42::/64", "fd42:0:0:1::/64", "fd42:0:0:2::/64"}},
		{"10.42.0.0/24", 24, []string{"10.42.0.0/24"}},
	}
	for _, tc := range tests {
		s := mustSet(t, tc.cluster, tc.mask)
		if got := allocN(t, s, len(tc.want)); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s by /%d: got %v, want %v", tc.cluster, tc.mask, got, tc.want)
		}
	}
}

func TestCIDRSetExhaustsAndReleases(t *testing.T) {
	s := mustSet(t, "10.42.0.0/22", 24) // four /24s
	got := allocN(t, s, 4)
	if _, err := s.allocate(); !errors.Is(err, errFull) {
		t.Fatalf("fifth allocation of four: %v, want errFull", err)
	}
	s.release(netip.MustParsePrefix(got[1]))
	if p, err := s.allocate(); err != nil || p.String() != got[1] {
		t.Fatalf("after releasing %s: allocate = %v, %v", got[1], p, err)
	}
}

// A released range is not handed out again while others are free: a node
// that just went away may still have routes pointing at it.
func TestCIDRSetDoesNotReuseAtOnce(t *testing.T) {
	s := mustSet(t, "10.42.0.0/16", 24)
	first := allocN(t, s, 2)
	s.release(netip.MustParsePrefix(first[0]))
	if p, _ := s.allocate(); p.String() != "10.42.2.0/24" {
		t.Errorf("after releasing %s the next range is %s, want 10.42.2.0/24", first[0], p)
	}
}

func TestCIDRSetOccupy(t *testing.T) {
	s := mustSet(t, "10.42.0.0/16", 24)
	for _, p := range []string{"10.42.0.0/24", "10.42.2.0/23", "10.42.5.7/32"} {
		if !s.occupy(netip.MustParsePrefix(p)) {
			t.Fatalf("occupy(%s) = false", p)
		}
	}
	if got := allocN(t, s, 2); strings.Join(got, " ") != "10.42.1.0/24 10.42.4.0/24" {
		t.Errorf("allocations around occupied ranges: %v", got)
	}
	if s.occupy(netip.MustParsePrefix("10.43.0.0/16")) || s.occupy(netip.MustParsePrefix("fd00::/64")) {
		t.Error("occupy of a range outside the cluster CIDR reported true")
	}
	if s.free != 256-6 { // four occupied, two allocated
		t.Errorf("free = %d, want %d", s.free, 256-6)
	}
	// A range covering the cluster range takes all of it.
	s.occupy(netip.MustParsePrefix("10.0.0.0/8"))
	if _, err := s.allocate(); !errors.Is(err, errFull) {
		t.Errorf("allocate after occupying a covering range: %v", err)
	}
}

func TestNewCIDRSetRefusesBadMasks(t *testing.T) {
	for _, tc := range []struct {
		cluster string
		mask    int
		want    string
	}{
		{"10.42.0.0/16", 8, "larger than the cluster CIDR"},
		{"10.0.0.0/8", 28, "at most /24"},
		{"10.42.0.0/16", 33, "longer than an address"},
	} {
		_, err := newCIDRSet(netip.MustParsePrefix(tc.cluster), tc.mask)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newCIDRSet(%s, /%d) = %v, want an error saying %q", tc.cluster, tc.mask, err, tc.want)
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{`{"clusterCIDR":"10.42.0.0"}`, "clusterCIDR: \"10.42.0.0\" is not a CIDR"},
		{`{"clusterCIDR":"10.42.1.0/16"}`, "clusterCIDR: \"10.42.1.0/16\" has host bits set; use 10.42.0.0/16"},
		{`{"clusterCIDR":"10.42.0.0/16,10.50.0.0/16"}`, "clusterCIDR: \"10.42.0.0/16,10.50.0.0/16\" has two CIDRs of one IP family"},
		{`{"nodeCIDRMaskSize":31}`, "nodeCIDRMaskSize: 31 must be between 1 and 30"},
		{`{"clusterCIDR":"10.0.0.0/8","nodeCIDRMaskSize":26}`, "nodeCIDRMaskSize: node CIDR mask size /26 splits"},
		{`{"clusterCIDR":"10.42.0.0/16,fd42::/32"}`, "nodeCIDRMaskSizeIPv6: node CIDR mask size /64 splits"},
		{`{"serviceCIDR":"nope"}`, "serviceCIDR:"},
		{`{"clusterCidr":"10.42.0.0/16"}`, `unknown field "clusterCidr"; the fields are clusterCIDR`},
	} {
		_, _, err := parseConfig([]byte(tc.raw))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "plugins.config.nodeipam") {
			t.Errorf("parseConfig(%s) = %v, want an error saying %q", tc.raw, err, tc.want)
		}
	}
	cfg, r, err := parseConfig([]byte(`{"clusterCIDR":"10.42.0.0/16,fd42::/56","serviceCIDR":"10.43.0.0/16"}`))
	if err != nil || len(r.cluster) != 2 || r.masks[0] != 24 || r.masks[1] != 64 || cfg.NodeCIDRMaskSize != 24 {
		t.Errorf("dual-stack config: %+v %+v %v", cfg, r, err)
	}
}
