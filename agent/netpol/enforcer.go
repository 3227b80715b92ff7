package netpol

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/agent/internal/ruleset"
	"github.com/keelson/keelson/agent/internal/syncloop"
)

// Options configure the enforcer of one node.
type Options struct {
	// NodeName is this node's name: its pods are the ones enforced here.
	NodeName string
	// Families to enforce (default IPv4).
	Families []v1.IPFamily
	// AllowMarkBit is the packet mark bit (0-31) rules use to allow a
	// packet; 16 when zero. It must differ from the proxy's masquerade bit.
	AllowMarkBit int
	// Exempt are addresses the node serves itself (cluster DNS).
	Exempt []netip.Addr
	// MinSyncPeriod is the least time between two syncs (default 1s).
	MinSyncPeriod time.Duration
	// SyncPeriod is the most time between two syncs; each periodic sync
	// rewrites every chain and puts the jumps first again (default 1m).
	SyncPeriod time.Duration
	// Mode is the service proxy's resolved mode: ModeNFTables keeps the
	// rules in the nftables table NFTTableName, anything else (ModeIPTables,
	// empty) in iptables' filter table. Whichever is used, the other's
	// leftovers are removed after the first successful sync.
	Mode string
}

// The enforcer's modes, named as the proxy's.
const (
	ModeIPTables = "iptables"
	ModeNFTables = "nftables"
)

// ApplyDefaults fills zero fields.
func (o *Options) ApplyDefaults() {
	if len(o.Families) == 0 {
		o.Families = []v1.IPFamily{v1.IPv4Protocol}
	}
	if o.AllowMarkBit == 0 {
		o.AllowMarkBit = 16
	}
	if o.MinSyncPeriod == 0 {
		o.MinSyncPeriod = time.Second
	}
	if o.SyncPeriod == 0 {
		o.SyncPeriod = time.Minute
	}
}

// Validate checks the options, naming the field at fault.
func (o *Options) Validate() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("netpol: nodeName is empty; set the node's name"))
	}
	if o.AllowMarkBit < 0 || o.AllowMarkBit > 31 {
		errs = append(errs, fmt.Errorf("netpol: allowMarkBit %d is out of range; use 0-31", o.AllowMarkBit))
	}
	if o.Mode != "" && o.Mode != ModeIPTables && o.Mode != ModeNFTables {
		errs = append(errs, fmt.Errorf("netpol: mode %q is unknown; use %s or %s (the proxy's resolved mode)", o.Mode, ModeIPTables, ModeNFTables))
	}
	if o.SyncPeriod < o.MinSyncPeriod {
		errs = append(errs, fmt.Errorf("netpol: syncPeriod %s must be at least minSyncPeriod %s", o.SyncPeriod, o.MinSyncPeriod))
	}
	return errors.Join(errs...)
}

// Enforcer keeps this node's NetworkPolicy rules in step with policies,
// pods and namespaces.
type Enforcer struct {
	opts       Options
	policies   networkinglisters.NetworkPolicyLister
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	synced     []cache.InformerSynced
	families   []*familyEnforcer
	loop       *syncloop.Loop
	log        *slog.Logger
	// otherModeRemoved is set once the other mode's leftovers are gone.
	otherModeRemoved atomic.Bool
}

type familyEnforcer struct {
	family   v1.IPFamily
	ipt      *ruleset.IPTables // iptables mode
	applier  *ruleset.Applier  // iptables mode
	nft      *nftLink          // nftables mode
	nftPrev  *NFTTable         // nftables mode: as installed; nil when unknown
	lastFull time.Time
}

// New returns an enforcer fed by informers of NetworkPolicies, Pods (of
// the whole cluster: peers may be anywhere) and Namespaces. Run starts it.
func New(opts Options, policies, pods, namespaces cache.SharedIndexInformer, log *slog.Logger) (*Enforcer, error) {
	opts.ApplyDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	e := &Enforcer{
		opts:       opts,
		policies:   networkinglisters.NewNetworkPolicyLister(policies.GetIndexer()),
		pods:       corelisters.NewPodLister(pods.GetIndexer()),
		namespaces: corelisters.NewNamespaceLister(namespaces.GetIndexer()),
		synced:     []cache.InformerSynced{policies.HasSynced, pods.HasSynced, namespaces.HasSynced},
		log:        log.With("component", "netpol"),
	}
	for _, f := range opts.Families {
		if opts.Mode == ModeNFTables {
			e.families = append(e.families, &familyEnforcer{family: f, nft: &nftLink{family: f}})
			continue
		}
		ipt, err := ruleset.NewIPTables(ruleset.FamilyOf(f))
		if err != nil {
			return nil, fmt.Errorf("netpol: %w", err)
		}
		e.families = append(e.families, &familyEnforcer{family: f, ipt: ipt, applier: ruleset.NewApplier(ipt, []string{"filter"}, Owned)})
	}
	e.loop = syncloop.New(e.Sync, syncloop.Options{Name: "netpol", MinInterval: opts.MinSyncPeriod, MaxInterval: opts.SyncPeriod, Logger: e.log})
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { e.loop.Trigger() },
		UpdateFunc: func(any, any) { e.loop.Trigger() },
		DeleteFunc: func(any) { e.loop.Trigger() },
	}
	for _, inf := range []cache.SharedIndexInformer{policies, pods, namespaces} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("netpol: watching: %w", err)
		}
	}
	return e, nil
}

// Run enforces until ctx ends, once the caches have synced (a partial view
// could deny traffic a policy allows).
func (e *Enforcer) Run(ctx context.Context) error {
	if !cache.WaitForCacheSync(ctx.Done(), e.synced...) {
		return fmt.Errorf("netpol: caches did not sync: %w", ctx.Err())
	}
	e.log.Info("network policy enforcement started", "node", e.opts.NodeName, "mode", cmp.Or(e.opts.Mode, ModeIPTables))
	e.loop.Run(ctx)
	return nil
}

// Jumps are the enforcer's rules in the built-in chains: first in FORWARD
// (pod to pod, pod to elsewhere) and INPUT (pod to the node), before any
// rule that accepts traffic.
func Jumps() []ruleset.Jump {
	c := []string{"-m", "comment", "--comment", "keelson-network-policies", "-j", chainNetpol}
	return []ruleset.Jump{{Table: "filter", Chain: "FORWARD", Args: c}, {Table: "filter", Chain: "INPUT", Args: c}}
}

// Sync compiles and applies the rules once.
func (e *Enforcer) Sync(ctx context.Context) error {
	policies, err := e.policies.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("netpol: listing policies: %w", err)
	}
	pods, err := e.pods.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("netpol: listing pods: %w", err)
	}
	namespaces, err := e.namespaces.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("netpol: listing namespaces: %w", err)
	}
	in := Input{Policies: policies, Pods: pods, Namespaces: namespaces, NodeName: e.opts.NodeName}
	var errs []error
	for _, f := range e.families {
		sync := e.syncFamily
		if f.nft != nil {
			sync = e.syncFamilyNFT
		}
		if err := sync(ctx, f, in); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 && !e.otherModeRemoved.Load() {
		e.removeOtherMode(ctx)
		e.otherModeRemoved.Store(true)
	}
	return errors.Join(errs...)
}

// removeOtherMode removes what the other mode left (the agent ran in it
// before, with --keep-rules-on-shutdown): a stale policy nothing updates
// any more would keep rejecting what the policies now allow.
func (e *Enforcer) removeOtherMode(ctx context.Context) {
	var err error
	if e.opts.Mode == ModeNFTables {
		err = cleanupIPTables(ctx, e.opts.Families)
	} else {
		err = cleanupNFT(e.opts.Families)
	}
	if err != nil {
		e.log.Warn("removing the other mode's network policy rules", "err", err)
	}
}

func (e *Enforcer) config(f v1.IPFamily) Config {
	return Config{Family: f, AllowMark: 1 << e.opts.AllowMarkBit, Exempt: e.opts.Exempt}
}

func (e *Enforcer) syncFamilyNFT(_ context.Context, f *familyEnforcer, in Input) error {
	start := time.Now()
	t, problems := CompileNFT(in, e.config(f.family))
	for _, p := range problems {
		e.log.Warn("ignoring part of a policy", "err", p)
	}
	full := f.nftPrev == nil || time.Since(f.lastFull) >= e.opts.SyncPeriod
	prev := f.nftPrev
	if full {
		prev = nil
	}
	b := NFTDiff(prev, t)
	f.nftPrev = nil
	if len(b.Ops) > 1 { // more than "add table"
		if err := f.nft.Apply(b); err != nil {
			return fmt.Errorf("netpol: %s rules: %w", f.family, err)
		}
	}
	f.nftPrev = t
	if full {
		f.lastFull = start
	}
	e.log.Debug("synced", "family", f.family, "rules", t.Rules(), "chainsWritten", b.Chains, "elementsWritten", b.Elements, "full", full, "took", time.Since(start))
	return nil
}

func (e *Enforcer) syncFamily(ctx context.Context, f *familyEnforcer, in Input) error {
	start := time.Now()
	rs, problems := Compile(in, e.config(f.family))
	for _, p := range problems {
		e.log.Warn("ignoring part of a policy", "err", p)
	}
	full := !f.applier.Known() || time.Since(f.lastFull) >= e.opts.SyncPeriod
	p, err := f.applier.Apply(ctx, rs, full)
	if err != nil {
		return fmt.Errorf("netpol: %s rules: %w", f.family, err)
	}
	if full {
		for _, j := range Jumps() {
			if err := f.ipt.EnsureFirst(j); err != nil {
				f.applier.Forget()
				return fmt.Errorf("netpol: %w", err)
			}
		}
		f.lastFull = start
	}
	e.log.Debug("synced", "family", f.family, "rules", rs.Rules(), "chainsWritten", p.Chains, "full", full, "took", time.Since(start))
	return nil
}

// Cleanup removes every rule, chain and table the enforcer installs, in
// either mode; all families when families is empty.
func Cleanup(ctx context.Context, families []v1.IPFamily) error {
	return errors.Join(cleanupIPTables(ctx, families), cleanupNFT(families))
}

func cleanupIPTables(ctx context.Context, families []v1.IPFamily) error {
	if err := ruleset.CleanupFamilies(ctx, families, Jumps(), []string{"filter"}, Owned); err != nil {
		return fmt.Errorf("netpol cleanup (iptables): %w", err)
	}
	return nil
}

// cleanupNFT deletes the enforcer's nftables tables; a kernel without
// nf_tables has none.
func cleanupNFT(families []v1.IPFamily) error {
	if len(families) == 0 {
		families = []v1.IPFamily{v1.IPv4Protocol, v1.IPv6Protocol}
	}
	var errs []error
	for _, f := range families {
		if err := (nftLink{family: f}).deleteTable(); err != nil {
			errs = append(errs, fmt.Errorf("netpol cleanup (nftables) %s: %w", f, err))
		}
	}
	return errors.Join(errs...)
}
