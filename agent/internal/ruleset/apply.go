package ruleset

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"

	v1 "k8s.io/api/core/v1"
)

// FamilyOf converts a Kubernetes IP family.
func FamilyOf(f v1.IPFamily) Family {
	if f == v1.IPv6Protocol {
		return IPv6
	}
	return IPv4
}

// IsFamily reports whether an address belongs to a Kubernetes IP family.
func IsFamily(a netip.Addr, f v1.IPFamily) bool {
	if f == v1.IPv6Protocol {
		return a.Unmap().Is6()
	}
	return a.Unmap().Is4()
}

// ChainName derives a chain name from a stable id: prefix plus 16
// characters of the id's hash. With a 12-character prefix it is exactly
// iptables' 28-character limit.
func ChainName(prefix, id string) string {
	h := sha256.Sum256([]byte(id))
	return prefix + base32.StdEncoding.EncodeToString(h[:])[:16]
}

// HostCIDR is an address as a one-address prefix (a.b.c.d/32, x::y/128).
func HostCIDR(a netip.Addr) string { return netip.PrefixFrom(a, a.BitLen()).String() }

// Args concatenates argument lists into one rule's arguments.
func Args(parts ...[]string) []string {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]string, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Applier installs successive Rulesets of one component in one family's
// tables: the first time, after a failure and when asked for a full sync
// it rewrites every chain (and deletes leftovers it finds); otherwise only
// the chains that changed.
type Applier struct {
	IPT    *IPTables
	Tables []string
	Owned  func(chain string) bool
	writer *Writer
}

// NewApplier returns an Applier that starts with a full sync.
func NewApplier(ipt *IPTables, tables []string, owned func(string) bool) *Applier {
	return &Applier{IPT: ipt, Tables: tables, Owned: owned, writer: NewWriter(owned)}
}

// Apply installs rs with one iptables-restore.
func (a *Applier) Apply(ctx context.Context, rs *Ruleset, full bool) (Payload, error) {
	if full {
		a.writer.Forget()
	}
	var existing map[string][]string
	if !a.writer.Known() {
		var err error
		if existing, err = a.IPT.ExistingChains(a.Tables, a.Owned); err != nil {
			return Payload{}, err
		}
	}
	p := a.writer.Payload(rs, existing)
	if err := a.IPT.Restore(ctx, p.Data); err != nil {
		a.writer.Forget()
		return p, err
	}
	a.writer.Done(p)
	return p, nil
}

// Known reports whether the next Apply may be partial.
func (a *Applier) Known() bool { return a.writer.Known() }

// Forget makes the next Apply full (after a failure outside Apply).
func (a *Applier) Forget() { a.writer.Forget() }

// CleanupFamilies runs Cleanup for each family whose iptables is installed
// (without iptables nothing can have been installed); all families when
// families is empty.
func CleanupFamilies(ctx context.Context, families []v1.IPFamily, jumps []Jump, tables []string, owned func(string) bool) error {
	if len(families) == 0 {
		families = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}
	var errs []error
	for _, f := range families {
		ipt, err := NewIPTables(FamilyOf(f))
		if err != nil {
			continue
		}
		if err := ipt.Cleanup(ctx, jumps, tables, owned); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
