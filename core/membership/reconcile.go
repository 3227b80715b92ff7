package membership

import (
	"github.com/keelson/keelson/internal/serfpool"

	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// RaftServer is one server in the raft configuration.
type RaftServer struct {
	ID      string
	Address string
	Voter   bool
}

// RaftMembership is what the reconciler needs from raft. FromRaft adapts a
// core/raftnode.Node.
type RaftMembership interface {
	IsLeader() bool
	// Servers returns the latest raft configuration.
	Servers() ([]RaftServer, error)
	// AddVoter adds a voter, promotes a non-voter or updates an address.
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
}

// Reconcile keeps raft's configuration in step with the pool for one raft
// term this server leads, and returns when ctx ends (leadership lost, the
// server stopping) or the pool shuts down. It runs a round on every
// membership change and every ReconcileInterval. core/server/leader.go starts
// it with the other leader duties; a round that finds this node no longer
// leader changes nothing.
//
// A round, following hashicorp/raft-autopilot:
//   - removes servers that left the pool gracefully, at once;
//   - if the voter count is odd, first removes one dead voter (so adding a
//     server does not raise the quorum while a voter is dead);
//   - adds alive servers missing from raft (or with a changed raft address)
//     as voters, and ends the round if it added any;
//   - otherwise removes dead servers: failed in the pool, or in raft but
//     unknown to the pool, for at least DeadServerGrace. Never this node,
//     never a majority of the voters at once, and never below
//     max(MinQuorum, BootstrapExpect) voters.
//
// The grace clocks live in memory: a new term starts them afresh, which only
// delays removals.
//
// A gossip member's tags are only its claim to be a server: before adding one
// as a voter the round asks prove to check that the member's raft address
// answers with that server's peer identity (see ProveServer). A member that
// cannot prove it is held out of raft, logged once per distinct reason.
func Reconcile(ctx context.Context, p *serfpool.Pool, r RaftMembership, prove ProveServer) error {
	rec := &reconciler{cfg: p.Config(), log: p.Logger(), members: p.Members, raft: r, prove: prove,
		markBootstrapped: p.SetBootstrapped, missing: map[string]time.Time{}, refused: map[string]string{}}
	tick := time.NewTicker(p.Config().ReconcileInterval)
	defer tick.Stop()
	for {
		changed := p.Changes()
		if err := rec.round(ctx, time.Now()); err != nil && ctx.Err() == nil {
			p.Logger().Warn("raft reconcile failed; retrying", "error", err)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return nil
		case <-p.Done():
			return nil
		}
	}
}

// PublishBootstrapped sets this server's bootstrapped tag once the server is
// in the raft configuration, so that no server starting with
// --bootstrap-expect ever counts it towards a second cluster. Every server
// runs it, leader or not, until the tag is published, ctx ends or the pool
// shuts down.
func PublishBootstrapped(ctx context.Context, p *serfpool.Pool, r RaftMembership) {
	self := p.Config().NodeName
	tick := time.NewTicker(p.Config().ReconcileInterval)
	defer tick.Stop()
	for {
		changed := p.Changes()
		servers, err := r.Servers()
		if err == nil && slices.ContainsFunc(servers, func(s RaftServer) bool { return s.ID == self }) {
			if err := p.SetBootstrapped(); err == nil {
				return
			}
			p.Logger().Warn("publishing the bootstrapped tag; retrying", "error", err)
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-p.Done():
			return
		}
	}
}

// ProveServer checks that the server answering at the raft address addr holds
// the peer identity of server id (a certificate only the cluster's servers
// can obtain), before the leader makes it a voter. Holding the gossip key is
// not enough to become one.
type ProveServer func(ctx context.Context, id, addr string) error

type reconciler struct {
	cfg     serfpool.Config
	log     *slog.Logger
	members func() []serfpool.Member
	raft    RaftMembership
	// prove, when set, must accept a member before it is added as a voter.
	prove ProveServer
	// refused: server ID -> the last reason it was held out, so each
	// reason is logged once.
	refused map[string]string
	// markBootstrapped publishes that this server is in a raft
	// configuration; nil in tests that only exercise the raft side.
	markBootstrapped func() error
	missing          map[string]time.Time // raft server ID -> first round it was not in the pool
	lastHolds        string
}

func (r *reconciler) round(ctx context.Context, now time.Time) error {
	servers, err := r.raft.Servers()
	if err != nil {
		return fmt.Errorf("read raft configuration: %w", err)
	}
	if r.markBootstrapped != nil && slices.ContainsFunc(servers, func(s RaftServer) bool { return s.ID == r.cfg.NodeName }) {
		if err := r.markBootstrapped(); err != nil {
			return err
		}
	}
	if !r.raft.IsLeader() {
		clear(r.missing)
		r.lastHolds = ""
		return nil
	}
	members := r.members()
	r.trackMissing(servers, members, now)
	cfg := r.cfg
	d := plan(planInput{
		self:      cfg.NodeName,
		members:   members,
		servers:   servers,
		missing:   r.missing,
		now:       now,
		grace:     cfg.DeadServerGrace,
		minVoters: max(cfg.MinQuorum, cfg.BootstrapExpect),
	})
	if holds := strings.Join(d.holds, "; "); holds != r.lastHolds {
		r.lastHolds = holds
		if holds != "" {
			r.log.Info("raft reconcile: keeping dead servers for now", "reasons", d.holds)
		}
	}
	for _, a := range d.actions {
		if ctx.Err() != nil || !r.raft.IsLeader() {
			return nil
		}
		if a.kind == actAdd && !r.proven(ctx, a) {
			continue
		}
		r.log.Info("raft reconcile: "+string(a.kind), "server", a.id, "addr", a.addr, "reason", a.reason)
		switch a.kind {
		case actAdd:
			err = r.raft.AddVoter(ctx, a.id, a.addr)
		case actRemove:
			err = r.raft.RemoveServer(ctx, a.id)
		}
		if err != nil {
			// Raft changes configuration one entry at a time; the next round
			// recomputes from whatever did commit.
			return fmt.Errorf("%s %q: %w", a.kind, a.id, err)
		}
	}
	return nil
}

// proven reports whether the member to add proved its server identity.
func (r *reconciler) proven(ctx context.Context, a action) bool {
	if r.prove == nil {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := r.prove(pctx, a.id, a.addr)
	if err == nil {
		delete(r.refused, a.id)
		return true
	}
	if reason := err.Error(); r.refused[a.id] != reason {
		r.refused[a.id] = reason
		r.log.Warn("raft reconcile: not adding a gossip member that claims to be a server: it did not prove a server identity on its raft address",
			"server", a.id, "addr", a.addr, "error", err)
	}
	return false
}

// trackMissing records when each raft server was first seen absent from the
// pool, and forgets servers that are back or no longer in raft.
func (r *reconciler) trackMissing(servers []RaftServer, members []serfpool.Member, now time.Time) {
	known := map[string]bool{}
	for _, m := range members {
		if m.IsServer() {
			known[m.Name] = true
		}
	}
	inRaft := map[string]bool{}
	for _, s := range servers {
		inRaft[s.ID] = true
		if known[s.ID] {
			delete(r.missing, s.ID)
		} else if _, ok := r.missing[s.ID]; !ok {
			r.missing[s.ID] = now
		}
	}
	maps.DeleteFunc(r.missing, func(id string, _ time.Time) bool { return !inRaft[id] })
}

type actionKind string

const (
	actAdd    actionKind = "add voter"
	actRemove actionKind = "remove server"
)

type action struct {
	kind     actionKind
	id, addr string
	reason   string
}

type planInput struct {
	self      string
	members   []serfpool.Member
	servers   []RaftServer
	missing   map[string]time.Time
	now       time.Time
	grace     time.Duration
	minVoters int
}

type decision struct {
	actions []action
	holds   []string // why dead servers are kept, for the log
}

// plan is one reconcile round's decision; it is pure so the rules can be
// tested exhaustively.
func plan(in planInput) decision {
	var d decision
	members := map[string]serfpool.Member{}
	for _, m := range in.members {
		if m.IsServer() {
			members[m.Name] = m
		}
	}
	servers := slices.Clone(in.servers)
	slices.SortFunc(servers, func(a, b RaftServer) int { return strings.Compare(a.ID, b.ID) })
	inRaft := map[string]RaftServer{}
	voters := 0
	for _, s := range servers {
		inRaft[s.ID] = s
		if s.Voter {
			voters++
		}
	}

	// Servers that left said they are not coming back: remove them first.
	for _, s := range servers {
		if m, ok := members[s.ID]; ok && m.Status == serfpool.StatusLeft && s.ID != in.self {
			d.actions = append(d.actions, action{kind: actRemove, id: s.ID, reason: "left the pool"})
			if s.Voter {
				voters--
			}
		}
	}

	var adds []action
	for _, m := range sortedByName(in.members) {
		if !m.IsServer() || m.Status != serfpool.StatusAlive || m.RaftAddr == "" || m.Name == in.self {
			continue
		}
		s, ok := inRaft[m.Name]
		switch {
		case !ok:
			adds = append(adds, action{kind: actAdd, id: m.Name, addr: m.RaftAddr, reason: "alive server not in raft"})
		case !s.Voter:
			adds = append(adds, action{kind: actAdd, id: m.Name, addr: m.RaftAddr, reason: "promote non-voter"})
		case s.Address != m.RaftAddr:
			adds = append(adds, action{kind: actAdd, id: m.Name, addr: m.RaftAddr,
				reason: "raft address changed from " + s.Address})
		}
	}

	removals, holds := deadRemovals(in, servers, members, voters)
	d.holds = holds

	// Autopilot: with an odd voter count, remove one dead voter before adding,
	// because adding first would raise the quorum while a voter is dead.
	if voters%2 == 1 {
		for i, a := range removals {
			if inRaft[a.id].Voter {
				d.actions = append(d.actions, a)
				removals = slices.Delete(removals, i, i+1)
				break
			}
		}
	}
	if len(adds) > 0 {
		// Additions and removals of healthy-quorum voters in separate rounds,
		// like autopilot, so each change commits against a settled config.
		d.actions = append(d.actions, adds...)
		return d
	}
	d.actions = append(d.actions, removals...)
	return d
}

// deadRemovals picks which dead servers may be removed now: stale ones (in
// raft, unknown to the pool) before failed ones, each past the grace period,
// with raft-autopilot's adjudicateRemoval limits on voters.
func deadRemovals(in planInput, servers []RaftServer, members map[string]serfpool.Member, voters int) ([]action, []string) {
	var stale, failed []RaftServer
	var holds []string
	for _, s := range servers {
		if s.ID == in.self {
			continue
		}
		m, known := members[s.ID]
		var since time.Time
		switch {
		case !known:
			since = in.missing[s.ID]
			if since.IsZero() {
				since = in.now
			}
		case m.Status == serfpool.StatusFailed:
			since = m.Since
		default:
			continue
		}
		if dead := in.now.Sub(since); dead < in.grace {
			holds = append(holds, fmt.Sprintf("%s: dead for %s, grace %s", s.ID, dead.Round(time.Second), in.grace))
			continue
		}
		if known {
			failed = append(failed, s)
		} else {
			stale = append(stale, s)
		}
	}

	var out []action
	potential := voters
	maxRemoval := (potential - 1) / 2
	removed := 0
	for _, s := range append(stale, failed...) {
		reason := "failed in the pool for longer than the grace period"
		if _, known := members[s.ID]; !known {
			reason = "in raft but not in the pool for longer than the grace period"
		}
		switch {
		case !s.Voter:
			// A non-voter's removal never affects the quorum.
		case potential-removed-1 < in.minVoters:
			holds = append(holds, fmt.Sprintf("%s: removal would leave fewer than %d voters (MinQuorum/BootstrapExpect)", s.ID, in.minVoters))
			continue
		case maxRemoval < 1:
			holds = append(holds, fmt.Sprintf("%s: removing it would remove a majority of the %d voters", s.ID, potential))
			continue
		default:
			maxRemoval--
			removed++
		}
		out = append(out, action{kind: actRemove, id: s.ID, reason: reason})
	}
	return out, holds
}

func sortedByName(ms []serfpool.Member) []serfpool.Member {
	out := slices.Clone(ms)
	slices.SortFunc(out, func(a, b serfpool.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// raftNode is the part of core/raftnode.Node that FromRaft needs.
type raftNode interface {
	IsLeader() bool
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	Raft() *raft.Raft
}

// FromRaft adapts a core/raftnode.Node (or anything with its methods) to
// RaftMembership.
func FromRaft(n raftNode) RaftMembership { return raftAdapter{n} }

type raftAdapter struct{ raftNode }

func (a raftAdapter) Servers() ([]RaftServer, error) {
	f := a.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []RaftServer
	for _, s := range f.Configuration().Servers {
		out = append(out, RaftServer{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}
