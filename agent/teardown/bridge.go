package teardown

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/keelson/keelson/internal/pidfile"
)

// aliasPrefix starts the alias of a bridge an agent made; the rest is the
// agent's data dir, so that the bridge names its owner.
const aliasPrefix = "keelson:"

// BridgeOwner is the data dir whose agent made the bridge, from its alias:
// "" for a bridge that is not Keelson's (or predates the alias).
func BridgeOwner(alias string) string {
	if !strings.HasPrefix(alias, aliasPrefix) {
		return ""
	}
	return strings.TrimPrefix(alias, aliasPrefix)
}

// ClaimBridge makes the pod bridge name the agent whose data dir is
// dataDir (creating the bridge when absent; the CNI bridge plugin then uses
// it). A bridge made by another data dir's agent is refused with what to
// do: stop that agent or choose another bridge if it runs, remove its
// leftovers if it was killed. A bridge the same data dir made is adopted:
// that is an agent restarting.
func ClaimBridge(name, dataDir string, mtu int) error {
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("creating the pod bridge %s (network.bridge, --cni-bridge): %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("pod bridge %s: %w", name, err)
		}
	} else if err != nil {
		return fmt.Errorf("pod bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("pod bridge (network.bridge, --cni-bridge): %s is a %s device, not a bridge: choose another name", name, l.Type())
	}
	owner := BridgeOwner(l.Attrs().Alias)
	if owner != "" && owner != dataDir {
		return otherOwnerError(name, owner)
	}
	if owner == "" {
		if err := netlink.LinkSetAlias(l, aliasPrefix+dataDir); err != nil {
			return fmt.Errorf("naming the pod bridge %s: %w", name, err)
		}
	}
	return nil
}

// otherOwnerError explains a bridge made by the agent of another data dir.
func otherOwnerError(name, owner string) error {
	p, ok, _ := pidfile.Read(AgentPIDFile(filepath.Join(owner, "agent")))
	if ok && p.Alive() {
		return fmt.Errorf("pod bridge %s (network.bridge, --cni-bridge) belongs to the keelson agent running as PID %d with --data-dir %s: "+
			"stop that agent, or give this one another --cni-bridge, --cgroup-root and --cluster-dns", name, p.PID, owner)
	}
	return fmt.Errorf("pod bridge %s (network.bridge, --cni-bridge) was left by a keelson agent with --data-dir %s that is no longer running, "+
		"and its pods' containers, mounts and rules may still be there: run `keelson agent --cleanup --all --data-dir %s` "+
		"(or `keelson killall --data-dir %s`) first", name, owner, owner, owner)
}

// deleteBridge deletes the pod bridge and every device enslaved to it (the
// host ends of the pods' veths), if the bridge is this data dir's: named
// so by its alias, or, without an alias (an agent older than the alias),
// when the data dir's own record names it (recorded).
func deleteBridge(name, dataDir string, recorded bool) (deleted []string, err error) {
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return nil, nil // a device of that name that no agent made
	}
	switch owner := BridgeOwner(l.Attrs().Alias); {
	case owner != "" && owner != dataDir:
		return nil, fmt.Errorf("pod bridge %s belongs to the agent of --data-dir %s, not %s: left in place", name, owner, dataDir)
	case owner == "" && !recorded:
		return nil, fmt.Errorf("bridge %s names no keelson data dir and %s has no record of it: left in place (delete it with `ip link del %s` if it is Keelson's)", name, dataDir, name)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing devices: %w", err)
	}
	var errs []error
	for _, port := range links {
		if port.Attrs().MasterIndex != l.Attrs().Index {
			continue
		}
		if err := netlink.LinkDel(port); err != nil {
			errs = append(errs, fmt.Errorf("deleting %s (on bridge %s): %w", port.Attrs().Name, name, err))
			continue
		}
		deleted = append(deleted, port.Attrs().Name)
	}
	if err := netlink.LinkDel(l); err != nil {
		return deleted, errors.Join(append(errs, fmt.Errorf("deleting bridge %s: %w", name, err))...)
	}
	return append(deleted, name), errors.Join(errs...)
}
