// Package nftlink is the netlink plumbing the agent's nftables writers
// (the service proxy and the network-policy enforcer) share: a table's
// handle, connections sized for a batch, finding and deleting a table, and
// the order in which a transaction deletes stale chains and sets. Each
// writer keeps its own table, commands and error messages.
package nftlink

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
	v1 "k8s.io/api/core/v1"
)

// Table is the handle of the table name in family's nftables family (ip
// or ip6).
func Table(family v1.IPFamily, name string) *nftables.Table {
	fam := nftables.TableFamilyIPv4
	if family == v1.IPv6Protocol {
		fam = nftables.TableFamilyIPv6
	}
	return &nftables.Table{Name: name, Family: fam}
}

// Conn opens a netlink connection whose buffers hold a batch of ops
// messages and the kernel's acknowledgement of each: the kernel refuses a
// batch larger than the send buffer and drops acknowledgements that do not
// fit the receive buffer (nft sizes its buffers the same way).
func Conn(ops int) (*nftables.Conn, error) {
	size := max(ops*1024, 1<<20)
	return nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size),
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size))
		})
		return errors.Join(err, serr)
	}))
}

// HasTable reports whether t exists.
func HasTable(t *nftables.Table) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return false, fmt.Errorf("nftables: listing tables: %w", err)
	}
	for _, have := range ts {
		if have.Name == t.Name {
			return true, nil
		}
	}
	return false, nil
}

// DeleteTable removes t if it exists.
func DeleteTable(t *nftables.Table) error {
	ok, err := HasTable(t)
	if err != nil || !ok {
		return err
	}
	return DeleteExisting(t)
}

// DeleteExisting removes t, which the caller found to exist; that it is
// gone meanwhile is not an error.
func DeleteExisting(t *nftables.Table) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("nftables: deleting table %s %s: %w", familyWord(t.Family), t.Name, err)
	}
	return nil
}

func familyWord(f nftables.TableFamily) string {
	if f == nftables.TableFamilyIPv6 {
		return "ip6"
	}
	return "ip"
}

// Stale calls op with the commands that delete the chains and sets prev
// has and cur lacks, in an order the kernel accepts, and returns how many
// chains it deletes. A stale chain may jump to another stale chain, which
// cannot be deleted while referred to: all are emptied first, then
// deleted; the sets go last, once no rule looks them up.
func Stale[C, S any](prevChains, curChains map[string]C, prevSets, curSets map[string]S, op func(verb, kind, name string)) int {
	var stale []string
	for _, name := range slices.Sorted(maps.Keys(prevChains)) {
		if _, ok := curChains[name]; !ok {
			stale = append(stale, name)
			op("flush", "chain", name)
		}
	}
	for _, name := range stale {
		op("delete", "chain", name)
	}
	for _, name := range slices.Sorted(maps.Keys(prevSets)) {
		if _, ok := curSets[name]; !ok {
			op("delete", "set", name)
		}
	}
	return len(stale)
}

// PrefixMask is the network mask of p, as many bytes as p's address.
func PrefixMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}

// ProtoNumber is the IP protocol number of a transport protocol as nft
// names it ("tcp", "udp", "sctp", "ipv6-icmp"); tcp for any other name.
func ProtoNumber(proto string) byte {
	switch proto {
	case "udp":
		return unix.IPPROTO_UDP
	case "ipv6-icmp":
		return unix.IPPROTO_ICMPV6
	case "sctp":
		return unix.IPPROTO_SCTP
	}
	return unix.IPPROTO_TCP
}
