package servicecidr

import (
	"encoding/json"
	"net/netip"

	networkingv1 "k8s.io/api/networking/v1"
)

// prefixes are cidr's ranges; the API server has validated them.
func prefixes(cidr *networkingv1.ServiceCIDR) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range cidr.Spec.CIDRs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// containing returns the ServiceCIDRs one of whose ranges satisfies match.
func containing(cidrs []*networkingv1.ServiceCIDR, match func(netip.Prefix) bool) []*networkingv1.ServiceCIDR {
	var out []*networkingv1.ServiceCIDR
	for _, c := range cidrs {
		for _, p := range prefixes(c) {
			if match(p) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// overlaps reports whether a range of a contains or is contained in one of b.
func overlaps(a, b *networkingv1.ServiceCIDR) bool {
	for _, p := range prefixes(a) {
		if len(containing([]*networkingv1.ServiceCIDR{b}, p.Overlaps)) > 0 {
			return true
		}
	}
	return false
}

func jsonPatch(meta map[string]any) ([]byte, error) {
	return json.Marshal(map[string]any{"metadata": meta})
}
