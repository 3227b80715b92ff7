package serfpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// eventBuffer decouples serf from OnEvent; serf blocks on a full channel.
const eventBuffer = 256

// Pool is this node's membership in the serf pool.
type Pool struct {
	cfg    Config
	log    *slog.Logger
	serf   *serf.Serf
	events chan serf.Event
	guard  *conflictGuard
	// fatal carries the error that must stop this node (a name conflict).
	fatal chan error

	mu           sync.Mutex
	since        map[string]statusSince // member name -> when its status was first seen
	changed      chan struct{}          // closed and replaced on every membership change
	bootstrapped bool
	serfAddr     string

	// joining is closed when the background join (cfg.Join) ends; nil
	// without one. Leave waits for it: a leave intent broadcast before the
	// pool knows another member reaches nobody, and the others then see
	// the node fail instead of leave.
	joining chan struct{}

	stop         chan struct{}
	wg           sync.WaitGroup
	shutdownOnce sync.Once
	shutdownErr  error
}

type statusSince struct {
	status Status
	since  time.Time
}

// Start creates the serf pool bound to cfg.BindAddr, encrypted with the key
// derived from cfg.Token, and returns at once. If cfg.Join is set it keeps
// trying to join those addresses in the background, with backoff, until one
// join succeeds or ctx ends (ctx bounds only the retry-join; Shutdown stops
// the pool).
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Pool{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "membership", "node", cfg.NodeName),
		events:       make(chan serf.Event, eventBuffer),
		since:        map[string]statusSince{},
		changed:      make(chan struct{}),
		bootstrapped: cfg.Bootstrapped,
		stop:         make(chan struct{}),
		guard:        newConflictGuard(cfg.NodeName),
		fatal:        make(chan error, 1),
	}
	sc, err := p.serfConfig()
	if err != nil {
		return nil, err
	}
	// The event loop must run before serf exists: serf sends its own join
	// event during Create.
	p.wg.Add(1)
	go p.eventLoop()
	s, err := serf.Create(sc)
	if err != nil {
		close(p.stop)
		p.wg.Wait()
		return nil, fmt.Errorf("membership: start serf on %s for %q: %w", cfg.BindAddr, cfg.NodeName, err)
	}
	p.serf = s
	// With port 0 the real port is known only now; publish it.
	ln := s.Memberlist().LocalNode()
	p.serfAddr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	p.guard.setLocal(p.serfAddr)
	if cfg.Proof != nil {
		if p.cfg.proof, err = cfg.Proof(p.serfAddr); err != nil {
			_ = p.Shutdown()
			return nil, fmt.Errorf("membership: proving node %q's identity: %w", cfg.NodeName, err)
		}
	}
	if err := s.SetTags(p.cfg.tags(p.serfAddr, p.bootstrapped)); err != nil {
		_ = p.Shutdown()
		return nil, fmt.Errorf("membership: set tags for %q: %w", cfg.NodeName, err)
	}
	p.log.Info("serf pool started", "addr", p.serfAddr, "role", cfg.Role, "raft_addr", cfg.RaftAddr)
	if len(cfg.Join) > 0 {
		p.joining = make(chan struct{})
		p.wg.Add(1)
		go p.retryJoin(ctx)
	}
	return p, nil
}

func (p *Pool) serfConfig() (*serf.Config, error) {
	cfg := p.cfg
	key := cfg.GossipKey
	if len(key) == 0 {
		var err error
		if key, err = GossipKey(cfg.Token); err != nil {
			return nil, err
		}
	}
	keyring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		return nil, fmt.Errorf("membership: gossip keyring: %w", err)
	}
	bind, _ := splitAddr(cfg.BindAddr, DefaultPort) // validated
	std := newStdLogger(cfg.Logger)

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeName
	mc.BindAddr, mc.BindPort = bind.host, bind.port
	mc.AdvertisePort = bind.port
	if cfg.AdvertiseAddr != "" {
		adv, _ := splitAddr(cfg.AdvertiseAddr, DefaultPort)
		mc.AdvertiseAddr, mc.AdvertisePort = adv.host, adv.port
	}
	mc.Keyring = keyring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.ProbeInterval = cfg.ProbeInterval
	mc.ProbeTimeout = cfg.ProbeTimeout
	mc.GossipInterval = cfg.GossipInterval
	mc.PushPullInterval = cfg.PushPullInterval
	mc.TCPTimeout = cfg.TCPTimeout
	mc.SuspicionMult = cfg.SuspicionMult
	mc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	mc.Logger = std

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.NodeName
	sc.Tags = cfg.tags("", cfg.Bootstrapped)
	sc.EventCh = p.events
	sc.MemberlistConfig = mc
	sc.Logger = std
	sc.LeavePropagateDelay = cfg.LeavePropagateDelay
	sc.BroadcastTimeout = max(sc.BroadcastTimeout, 2*cfg.LeavePropagateDelay)
	sc.ValidateNodeNames = true
	sc.Merge = p.guard
	if cfg.DataDir != "" {
		dir := filepath.Join(cfg.DataDir, "serf")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("membership: create serf dir %q: %w", dir, err)
		}
		sc.SnapshotPath = filepath.Join(dir, "local.snapshot")
	}
	return sc, nil
}

func (p *Pool) eventLoop() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case e := <-p.events:
			switch e := e.(type) {
			case serf.MemberEvent:
				p.memberEvent(e)
			case *serf.Query:
				p.query(e)
			}
		}
	}
}

func (p *Pool) memberEvent(me serf.MemberEvent) {
	typ, ok := fromSerfEventType(me.Type)
	if !ok {
		return
	}
	for _, sm := range me.Members {
		m := p.withSince(fromSerf(sm))
		if typ == EventReap {
			p.forget(m.Name)
		}
		p.log.Info("member "+string(typ), "member", m.Name, "role", m.Role, "status", m.Status, "addr", m.SerfAddr)
		if p.cfg.OnEvent != nil {
			p.cfg.OnEvent(Event{Type: typ, Member: m})
		}
	}
	p.notifyChanged()
}

// withSince fills m.Since, recording now when m's status is new to us.
func (p *Pool) withSince(m Member) Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.since[m.Name]
	if !ok || s.status != m.Status {
		s = statusSince{status: m.Status, since: time.Now()}
		p.since[m.Name] = s
	}
	m.Since = s.since
	return m
}

func (p *Pool) forget(name string) {
	p.mu.Lock()
	delete(p.since, name)
	p.mu.Unlock()
}

func (p *Pool) notifyChanged() {
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Changes returns a channel closed at the next membership change (a member
// joined, failed, left, was reaped or changed its tags). Take it before
// reading Members, so no change between the two is missed.
func (p *Pool) Changes() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// retryJoin joins cfg.Join with exponential backoff until one address
// answers, ctx ends or the pool stops. Like Consul's retry_join, it stops
// after the first success: from then on gossip (and serf's snapshot on
// restart) keeps the membership.
func (p *Pool) retryJoin(ctx context.Context) {
	defer p.wg.Done()
	defer close(p.joining)
	wait := p.cfg.RetryJoinInterval
	for attempt := 1; ; attempt++ {
		err := p.Join(p.cfg.Join...)
		if err == nil {
			return
		}
		if nce, ok := asConflict(err); ok {
			p.log.Error("node name conflict; this node must stop", "other", nce.OtherAddr, "error", err)
			p.fatal <- nce
			return
		}
		p.log.Warn("join failed, retrying", "attempt", attempt, "retry_in", wait, "error", err,
			"check", "that a server runs at each --join address and that its gossip port (TCP and UDP) is reachable from here")
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			p.log.Warn("gave up joining", "join", p.cfg.Join, "cause", context.Cause(ctx))
			return
		case <-p.stop:
			t.Stop()
			return
		}
		wait = min(2*wait, p.cfg.RetryJoinMaxInterval)
	}
}

// Join contacts the given members (host[:port], default port 7946) once and
// merges their view of the pool. It succeeds if at least one answered.
func (p *Pool) Join(addrs ...string) error {
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		hp, err := splitAddr(a, DefaultPort)
		if err != nil {
			return fmt.Errorf("membership: join address: %w", err)
		}
		norm = append(norm, hp.String())
	}
	p.guard.take() // a conflict seen before this join is not its outcome
	n, err := p.serf.Join(norm, true)
	if n > 0 {
		p.log.Info("joined pool", "contacted", n, "join", norm)
		return nil
	}
	if nce := p.guard.take(); nce != nil {
		return fmt.Errorf("membership: join %v: %w", norm, nce)
	}
	if err == nil {
		err = errors.New("no member answered")
	}
	err = flatten(err)
	if hint := joinHint(err); hint != "" {
		p.log.Error("join refused", "join", norm, "error", err, "hint", hint)
		return fmt.Errorf("membership: join %v: %w (%s)", norm, err, hint)
	}
	return fmt.Errorf("membership: join %v: %w", norm, err)
}

// flatten turns serf's multierror ("1 error occurred:\n\t* ...") into one
// line so the log stays one line per event.
func flatten(err error) error {
	me, ok := err.(interface{ WrappedErrors() []error })
	if !ok {
		return err
	}
	var msgs []string
	for _, e := range me.WrappedErrors() {
		msgs = append(msgs, e.Error())
	}
	return flatErr{msg: strings.Join(msgs, "; "), err: err}
}

type flatErr struct {
	msg string
	err error
}

func (e flatErr) Error() string { return e.msg }
func (e flatErr) Unwrap() error { return e.err }

// joinHint explains a join error that is not plain unreachability. A peer
// with another gossip key reads our encrypted push/pull as garbage and hangs
// up, so the join sees the connection close mid-exchange.
func joinHint(err error) string {
	s := err.Error()
	for _, unreachable := range []string{"connection refused", "no route to host", "i/o timeout", "no such host", "network is unreachable"} {
		if strings.Contains(s, unreachable) {
			return ""
		}
	}
	for _, sign := range []string{"decrypt", "EOF", "connection reset", "Reading remote state", "remote state"} {
		if strings.Contains(s, sign) {
			return "the cluster token is probably wrong: it must match the token of the cluster being joined (--token, or DATA_DIR/token on the first server)"
		}
	}
	return ""
}

// Members returns every member the pool knows, including this node, sorted
// by name.
func (p *Pool) Members() []Member {
	sms := p.serf.Members()
	out := make([]Member, 0, len(sms))
	for _, sm := range sms {
		out = append(out, p.withSince(fromSerf(sm)))
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Local returns this node's own member record.
func (p *Pool) Local() Member { return p.withSince(fromSerf(p.serf.LocalMember())) }

// Config returns the configuration the pool was started with (defaults
// applied).
func (p *Pool) Config() Config { return p.cfg }

// Logger returns the pool's logger.
func (p *Pool) Logger() *slog.Logger { return p.log }

// Fatal yields the error that must stop this node: its own join found
// another live member using its name (a *NameConflictError).
func (p *Pool) Fatal() <-chan error { return p.fatal }

// Done is closed when the pool shuts down.
func (p *Pool) Done() <-chan struct{} { return p.stop }

// Addr is the host:port other members reach this one at.
func (p *Pool) Addr() string { return p.serfAddr }

// SetBootstrapped publishes that this server now holds raft state, so no
// other server will bootstrap a new cluster with it. Call it right after
// bootstrapping raft; Reconcile calls it once this server appears in the
// raft configuration.
func (p *Pool) SetBootstrapped() error {
	p.mu.Lock()
	if p.bootstrapped {
		p.mu.Unlock()
		return nil
	}
	p.bootstrapped = true
	p.mu.Unlock()
	if err := p.serf.SetTags(p.cfg.tags(p.serfAddr, true)); err != nil {
		p.mu.Lock()
		p.bootstrapped = false
		p.mu.Unlock()
		return fmt.Errorf("membership: publish bootstrapped tag for %q: %w", p.cfg.NodeName, err)
	}
	return nil
}

// Leave announces a graceful departure and waits LeavePropagateDelay for it
// to spread; other members then see this node as left, not failed, and the
// leader removes it from raft at once. Call Shutdown afterwards.
func (p *Pool) Leave() error {
	if p.joining != nil {
		select {
		case <-p.joining:
		case <-time.After(leaveJoinWait):
			p.log.Warn("leaving while still joining: the other members may see this node fail rather than leave", "waited", leaveJoinWait)
		}
	}
	if err := p.serf.Leave(); err != nil {
		return fmt.Errorf("membership: leave pool as %q: %w", p.cfg.NodeName, err)
	}
	p.log.Info("left pool")
	return nil
}

// leaveJoinWait bounds how long Leave waits for a join in flight: a pool
// whose servers cannot be reached has nobody to tell anyway.
const leaveJoinWait = 5 * time.Second

// Shutdown stops serf without leaving (others will see this node fail) and
// stops the pool's goroutines. Safe to call more than once.
func (p *Pool) Shutdown() error {
	p.shutdownOnce.Do(func() {
		// serf first, while eventLoop still drains: serf blocks on a full
		// event channel.
		if p.serf != nil {
			if err := p.serf.Shutdown(); err != nil {
				p.shutdownErr = fmt.Errorf("membership: shutdown serf for %q: %w", p.cfg.NodeName, err)
			}
		}
		close(p.stop)
		p.wg.Wait()
		p.log.Info("serf pool stopped")
	})
	return p.shutdownErr
}
