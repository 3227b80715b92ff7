package proxy

import (
	"context"

	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/internal/ruleset"
)

// Proxy modes: how the rules reach the kernel.
const (
	// ModeIPTables writes chains with iptables-restore (kube-proxy's
	// iptables mode).
	ModeIPTables = "iptables"
	// ModeNFTables writes one nftables table per family with verdict maps
	// over netlink (kube-proxy's nftables mode).
	ModeNFTables = "nftables"
)

// ResolveMode picks the mode when none was asked for: nftables when the
// kernel speaks nf_tables (supported returns nil), iptables otherwise,
// with the reason. An explicit mode is kept as it is.
func ResolveMode(mode string, supported func() error) (chosen, reason string) {
	if mode != "" {
		return mode, "configured"
	}
	if err := supported(); err != nil {
		return ModeIPTables, "the kernel does not support nftables (" + err.Error() + ")"
	}
	return ModeNFTables, "default"
}

// dataplane programs one family's ServicePorts into the kernel. Both
// modes share the snapshot and the proxier; only this differs.
type dataplane interface {
	// sync installs the rules of the view's ports; full rewrites
	// everything instead of what changed since the last sync.
	sync(ctx context.Context, v *portView, full bool) (dataplaneStats, error)
	// known is false until a sync succeeded, and after a failed one: the
	// next sync must then be full.
	known() bool
	// present reports whether the proxy's rules are still installed
	// (false after someone flushed them).
	present(ctx context.Context) (bool, error)
}

type dataplaneStats struct {
	rules  int // rules (and, in nftables mode, map elements) installed
	chains int // chains written or deleted
}

// iptablesDataplane is the iptables mode: chains in the nat and filter
// tables, written with iptables-restore --noflush, and jumps to them from
// the built-in chains.
type iptablesDataplane struct {
	ipt     *ruleset.IPTables
	applier *ruleset.Applier
	rules   RulesConfig
	jumps   []ruleset.Jump
}

func newIPTablesDataplane(f v1.IPFamily, rc RulesConfig) (*iptablesDataplane, error) {
	ipt, err := ruleset.NewIPTables(ruleset.FamilyOf(f))
	if err != nil {
		return nil, err
	}
	rc.RandomFully = ipt.HasRandomFully()
	return &iptablesDataplane{ipt: ipt, applier: ruleset.NewApplier(ipt, []string{"nat", "filter"}, Owned), rules: rc, jumps: Jumps()}, nil
}

func (d *iptablesDataplane) sync(ctx context.Context, v *portView, full bool) (dataplaneStats, error) {
	ports := v.all()
	cfg := d.rules
	cfg.NoComments = countEndpoints(ports) > LargeClusterEndpoints
	rs := Rules(ports, cfg)
	payload, err := d.applier.Apply(ctx, rs, full)
	if err != nil {
		return dataplaneStats{}, err
	}
	if full {
		if err := ensureJumps(d.ipt, d.jumps); err != nil {
			d.applier.Forget()
			return dataplaneStats{}, err
		}
	}
	return dataplaneStats{rules: rs.Rules(), chains: payload.Chains}, nil
}

func (d *iptablesDataplane) known() bool { return d.applier.Known() }

func (d *iptablesDataplane) present(context.Context) (bool, error) {
	return d.ipt.ChainExists("nat", chainServices)
}
