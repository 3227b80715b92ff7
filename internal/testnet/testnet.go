// Package testnet picks network names and ranges for tests that wire pods,
// so that tests running side by side on one machine (other packages, other
// people's) never share a bridge or a pod CIDR, and removes what they made.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"net"
	"os/exec"
	"strings"
)

// BridgeName returns a fresh Linux bridge name ("kt" and 8 hex digits).
func BridgeName() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "kt" + hex.EncodeToString(b[:])
}

// PodCIDR returns a 10.244.x.0/24 that no route of this host overlaps.
func PodCIDR() (string, error) {
	return freeRange(func(x int64) string { return fmt.Sprintf("10.244.%d.0/24", 50+x) })
}

// ClusterCIDR returns a 10.x.0.0/16 (x from 160 to 239) that no route of
// this host overlaps, for a cluster whose nodes each take a /24 of it.
func ClusterCIDR() (string, error) {
	return freeRange(func(x int64) string { return fmt.Sprintf("10.%d.0.0/16", 160+x%80) })
}

// freeRange tries random candidates until one overlaps no route.
func freeRange(candidate func(x int64) string) (string, error) {
	used, err := routes()
	if err != nil {
		return "", err
	}
	for range 200 {
		x, _ := rand.Int(rand.Reader, big.NewInt(200))
		cidr := candidate(x.Int64())
		_, cand, _ := net.ParseCIDR(cidr)
		free := true
		for _, u := range used {
			if u.Contains(cand.IP) || cand.Contains(u.IP) {
				free = false
				break
			}
		}
		if free {
			return cidr, nil
		}
	}
	return "", fmt.Errorf("testnet: no free range like %s", candidate(0))
}

// routes lists the destinations of every IPv4 route of this host, the
// default route aside.
func routes() ([]*net.IPNet, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("testnet: listing routes: %w", err)
	}
	var used []*net.IPNet
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		dst := f[0]
		if dst == "local" || dst == "broadcast" || dst == "unreachable" {
			if len(f) < 2 {
				continue
			}
			dst = f[1]
		}
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		if _, n, err := net.ParseCIDR(dst); err == nil && n.String() != "0.0.0.0/0" {
			used = append(used, n)
		}
	}
	return used, nil
}

// DeleteLink removes a network interface if it exists.
func DeleteLink(name string) error {
	if _, err := net.InterfaceByName(name); err != nil {
		return nil
	}
	if out, err := exec.Command("ip", "link", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("testnet: deleting %s: %v: %s", name, err, out)
	}
	return nil
}
