package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/agent/internal/ruleset"
	"github.com/keelson/keelson/agent/internal/syncloop"
)

// Config configures the proxy of one node.
type Config struct {
	// Mode is ModeIPTables or ModeNFTables; empty: nftables where the
	// kernel supports it, iptables otherwise (ResolveMode).
	Mode string
	// NodeName is this node's name: endpoints on it are local.
	NodeName string
	// Families are the IP families to program (default IPv4 only).
	Families []v1.IPFamily
	// ClusterCIDRs are the pods' address ranges, at most one per family
	// (see RulesConfig.ClusterCIDR).
	ClusterCIDRs []netip.Prefix
	// NodePortAddresses limits node ports to local addresses in these
	// ranges (--nodeport-addresses); empty: every non-loopback address.
	NodePortAddresses []netip.Prefix
	// MasqueradeAll masquerades all traffic to cluster IPs.
	MasqueradeAll bool
	// MasqueradeBit is the packet mark bit (0-31) for masquerade; 14 as
	// kube-proxy when zero.
	MasqueradeBit int
	// Exempt are addresses the node serves itself (cluster DNS).
	Exempt []netip.Addr
	// MinSyncPeriod is the least time between two syncs (default 1s).
	MinSyncPeriod time.Duration
	// SyncPeriod is the most time between two full syncs, which rewrite
	// every chain and check the jumps; other syncs write only the chains
	// that changed (default 1h, as kube-proxy: a full sync of 10,000
	// services takes minutes of iptables-restore on the nft backend).
	// Every CanaryPeriod the proxy checks that its services chain still
	// exists, and syncs in full at once if something flushed the tables.
	SyncPeriod time.Duration
	// CanaryPeriod is how often the services chain is checked (default 30s).
	CanaryPeriod time.Duration
	// OnSync, if set, is called after each successful sync.
	OnSync func(SyncStats)
	// OnSyncError, if set, is called after each failed sync of a family
	// (the sync is retried).
	OnSyncError func(v1.IPFamily, error)
}

// SyncStats describe one sync.
type SyncStats struct {
	Family   v1.IPFamily
	Start    time.Time
	Duration time.Duration
	Full     bool // every chain written and jumps checked
	Ports    int  // service ports programmed
	Rules    int  // rules in the proxy's chains
	Chains   int  // chains written or deleted by this sync
}

// ApplyDefaults fills zero fields with defaults.
func (c *Config) ApplyDefaults() {
	if len(c.Families) == 0 {
		c.Families = []v1.IPFamily{v1.IPv4Protocol}
	}
	if c.MasqueradeBit == 0 {
		c.MasqueradeBit = 14
	}
	if c.MinSyncPeriod == 0 {
		c.MinSyncPeriod = time.Second
	}
	if c.SyncPeriod == 0 {
		c.SyncPeriod = time.Hour
	}
	if c.CanaryPeriod == 0 {
		c.CanaryPeriod = 30 * time.Second
	}
}

// Validate checks the configuration, naming the field at fault.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("proxy: nodeName is empty; set the node's name"))
	}
	if c.Mode != "" && c.Mode != ModeIPTables && c.Mode != ModeNFTables {
		errs = append(errs, fmt.Errorf("proxy: mode %q is unknown; use %s, %s, or nothing for the default", c.Mode, ModeIPTables, ModeNFTables))
	}
	if c.MasqueradeBit < 0 || c.MasqueradeBit > 31 {
		errs = append(errs, fmt.Errorf("proxy: masqueradeBit %d is out of range; use 0-31", c.MasqueradeBit))
	}
	seen := map[v1.IPFamily]bool{}
	for _, p := range c.ClusterCIDRs {
		f := familyOf(p.Addr())
		if seen[f] {
			errs = append(errs, fmt.Errorf("proxy: clusterCIDRs has two %s ranges; give at most one per family", f))
		}
		seen[f] = true
	}
	for _, f := range c.Families {
		if f != v1.IPv4Protocol && f != v1.IPv6Protocol {
			errs = append(errs, fmt.Errorf("proxy: families: %q is not IPv4 or IPv6", f))
		}
	}
	if c.MinSyncPeriod < 0 || c.SyncPeriod < c.MinSyncPeriod {
		errs = append(errs, fmt.Errorf("proxy: syncPeriod %s must be at least minSyncPeriod %s", c.SyncPeriod, c.MinSyncPeriod))
	}
	return errors.Join(errs...)
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Unmap().Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}

// Proxier keeps this node's service rules in step with Services and
// EndpointSlices.
type Proxier struct {
	cfg      Config
	tracker  *changeTracker
	synced   []cache.InformerSynced
	families []*familyProxier
	loop     *syncloop.Loop
	log      *slog.Logger
	// otherModeRemoved is set once the other mode's leftovers were removed,
	// after this mode's first successful sync.
	otherModeRemoved atomic.Bool
}

// familyProxier is the state of one IP family's tables.
type familyProxier struct {
	family    v1.IPFamily
	dp        dataplane
	lastFull  time.Time
	forceFull atomic.Bool // set by the canary check
	installed atomic.Bool // a sync has succeeded
	conntrack *conntrackCleaner
	// ports are this family's ServicePorts, updated by each sync for the
	// services that changed.
	ports *portView
	// ctPending are the services changed since the conntrack cleaner last
	// ran (it runs after successful syncs only).
	ctPending map[string]bool
}

// New returns a proxier fed by the given informers (of Services and of
// EndpointSlices, which may be shared with other components: the proxier
// only reads them). Run starts it.
func New(cfg Config, services, slices cache.SharedIndexInformer, log *slog.Logger) (*Proxier, error) {
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	mode, why := ResolveMode(cfg.Mode, NFTSupported)
	if cfg.Mode == "" && mode != ModeNFTables {
		log.Warn("proxy: falling back to the iptables mode", "reason", why)
	}
	cfg.Mode = mode
	p := &Proxier{
		cfg:     cfg,
		tracker: newChangeTracker(),
		log:     log.With("component", "proxy"),
	}
	for _, f := range cfg.Families {
		rc := RulesConfig{
			Family: f, MasqueradeAll: cfg.MasqueradeAll, MasqueradeMark: 1 << cfg.MasqueradeBit,
			NodePortAddresses: cfg.NodePortAddresses, Exempt: cfg.Exempt,
		}
		for _, c := range cfg.ClusterCIDRs {
			if familyOf(c.Addr()) == f {
				rc.ClusterCIDR = c
			}
		}
		var dp dataplane
		var err error
		if cfg.Mode == ModeNFTables {
			dp, err = newNFTDataplane(f, rc)
		} else {
			dp, err = newIPTablesDataplane(f, rc)
		}
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		p.families = append(p.families, &familyProxier{family: f, dp: dp, conntrack: newConntrackCleaner(f),
			ports: &portView{bySvc: map[string][]ServicePort{}}, ctPending: map[string]bool{}})
	}
	p.loop = syncloop.New(p.Sync, syncloop.Options{Name: "proxy", MinInterval: cfg.MinSyncPeriod, MaxInterval: cfg.SyncPeriod, Logger: p.log})
	// The first sync waits until the tracker has seen every object the
	// informers listed, not merely until their caches hold them.
	handler := p.tracker.handler(p.loop.Trigger)
	for _, inf := range []cache.SharedIndexInformer{services, slices} {
		reg, err := inf.AddEventHandler(handler)
		if err != nil {
			return nil, fmt.Errorf("proxy: watching: %w", err)
		}
		p.synced = append(p.synced, inf.HasSynced, reg.HasSynced)
	}
	return p, nil
}

// Mode is the mode the proxy runs in, resolved (ModeIPTables or
// ModeNFTables): the network policy enforcer follows it.
func (p *Proxier) Mode() string { return p.cfg.Mode }

// Run programs the rules until ctx ends; it waits for the caches first, so
// that a restart never installs a partial view.
func (p *Proxier) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return fmt.Errorf("proxy: caches did not sync: %w", ctx.Err())
	}
	p.log.Info("proxy started", "node", p.cfg.NodeName, "families", p.cfg.Families, "mode", p.cfg.Mode)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.canary(ctx)
	}()
	p.loop.Run(ctx)
	wg.Wait()
	return nil
}

// canary resyncs in full when the services chain disappeared (a firewall
// reload, an iptables -F -X by hand): partial syncs assume the chains they
// wrote are still there.
func (p *Proxier) canary(ctx context.Context) {
	t := time.NewTicker(p.cfg.CanaryPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, f := range p.families {
			ok, err := f.dp.present(ctx)
			if err == nil && !ok && f.installed.Load() {
				p.log.Warn("the proxy's chains are gone; resyncing in full", "family", f.family)
				f.forceFull.Store(true)
				p.loop.Trigger()
			}
		}
	}
}

// Sync programs the current state once: one iptables-restore or netlink
// transaction per family. Only the services that changed since the last
// sync are recomputed.
func (p *Proxier) Sync(ctx context.Context) error {
	changes := p.tracker.take()
	var errs []error
	for _, f := range p.families {
		if err := p.syncFamily(ctx, f, changes); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && !p.otherModeRemoved.Load() {
		// Only now: until this mode's rules are in, the other mode's (an
		// agent upgraded from it kept them) keep serving the node.
		p.removeOtherMode(ctx)
		p.otherModeRemoved.Store(true)
	}
	return errors.Join(errs...)
}

func (p *Proxier) syncFamily(ctx context.Context, f *familyProxier, changes []serviceChange) error {
	start := time.Now()
	for _, e := range f.ports.update(changes, p.cfg.NodeName, f.family) {
		p.log.Warn("skipping an invalid address", "err", e)
	}
	for _, key := range f.ports.changed {
		f.ctPending[key] = true
	}
	full := f.forceFull.Swap(false) || !f.dp.known() || time.Since(f.lastFull) >= p.cfg.SyncPeriod
	written, err := f.dp.sync(ctx, f.ports, full)
	if err != nil {
		if p.cfg.OnSyncError != nil {
			p.cfg.OnSyncError(f.family, err)
		}
		return fmt.Errorf("proxy: %s %s rules: %w", f.family, p.cfg.Mode, err)
	}
	f.installed.Store(true)
	if full {
		f.lastFull = start
	}
	f.conntrack.afterSync(f.ports, f.ctPending, p.log)
	clear(f.ctPending)
	stats := SyncStats{Family: f.family, Start: start, Duration: time.Since(start), Full: full,
		Ports: f.ports.count(), Rules: written.rules, Chains: written.chains}
	p.log.Debug("synced", "family", f.family, "ports", stats.Ports, "rules", stats.Rules, "chainsWritten", stats.Chains, "full", full, "took", stats.Duration)
	if p.cfg.OnSync != nil {
		p.cfg.OnSync(stats)
	}
	return nil
}

func countEndpoints(ports []ServicePort) int {
	n := 0
	for i := range ports {
		n += len(ports[i].Endpoints)
	}
	return n
}

// Jumps are the proxy's rules in the built-in chains, top to bottom.
func Jumps() []ruleset.Jump {
	newConn := []string{"-m", "conntrack", "--ctstate", "NEW"}
	comment := func(c string) []string { return []string{"-m", "comment", "--comment", c} }
	return []ruleset.Jump{
		{Table: "nat", Chain: "PREROUTING", Args: ruleset.Args(comment("keelson-service-portals"), []string{"-j", chainServices})},
		{Table: "nat", Chain: "OUTPUT", Args: ruleset.Args(comment("keelson-service-portals"), []string{"-j", chainServices})},
		{Table: "nat", Chain: "POSTROUTING", Args: ruleset.Args(comment("keelson-postrouting"), []string{"-j", chainPostrouting})},
		{Table: "filter", Chain: "FORWARD", Args: ruleset.Args(comment("keelson-forward"), []string{"-j", chainForward})},
		{Table: "filter", Chain: "FORWARD", Args: ruleset.Args(newConn, comment("keelson-service-portals"), []string{"-j", chainServices})},
		{Table: "filter", Chain: "FORWARD", Args: ruleset.Args(newConn, comment("keelson-external-services"), []string{"-j", chainExternalServices})},
		{Table: "filter", Chain: "OUTPUT", Args: ruleset.Args(newConn, comment("keelson-service-portals"), []string{"-j", chainServices})},
		{Table: "filter", Chain: "INPUT", Args: ruleset.Args(newConn, comment("keelson-external-services"), []string{"-j", chainExternalServices})},
	}
}

// ensureJumps inserts missing jumps; inserting bottom-up keeps a chain's
// jumps in the listed order.
func ensureJumps(ipt *ruleset.IPTables, jumps []ruleset.Jump) error {
	for i := len(jumps) - 1; i >= 0; i-- {
		if err := ipt.EnsureJump(jumps[i]); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup removes every rule, chain and table the proxy installs in either
// mode, for each family (keelson agent --cleanup, and shutdown); all
// families when families is empty.
func Cleanup(ctx context.Context, families []v1.IPFamily) error {
	var errs []error
	if err := ruleset.CleanupFamilies(ctx, families, Jumps(), []string{"nat", "filter"}, Owned); err != nil {
		errs = append(errs, fmt.Errorf("proxy cleanup (iptables): %w", err))
	}
	if err := CleanupNFT(ctx, families); err != nil {
		errs = append(errs, fmt.Errorf("proxy cleanup (nftables): %w", err))
	}
	return errors.Join(errs...)
}

// removeOtherMode removes what the other mode left (the agent ran in it
// before, with --keep-rules-on-shutdown): stale rules of a proxy nothing
// updates any more must not outlive the first sync of this one.
func (p *Proxier) removeOtherMode(ctx context.Context) {
	var err error
	if p.cfg.Mode == ModeNFTables {
		err = ruleset.CleanupFamilies(ctx, p.cfg.Families, Jumps(), []string{"nat", "filter"}, Owned)
	} else {
		err = CleanupNFT(ctx, p.cfg.Families)
	}
	if err != nil {
		p.log.Warn("removing the other proxy mode's rules", "err", err)
	}
}
