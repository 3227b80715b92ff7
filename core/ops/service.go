package ops

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// snapshotChunkBytes bounds one SnapshotChunk message.
const snapshotChunkBytes = 256 << 10

// ServiceConfig is what the admin service works on.
type ServiceConfig struct {
	Node  *raftnode.Node
	Store *fsm.Store
	// Gossip returns the serf status of every server the pool knows, by
	// node name. Nil when there is no pool (tests).
	Gossip func() map[string]string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// DataDir is the server's data dir (its newest raft snapshot is read
	// there); PKIDir its certificates. Either may be empty (tests).
	DataDir, PKIDir string
	// Version is the keelson version the server runs.
	Version string
	// QuotaBytes is the store's quota (--store-quota-bytes).
	QuotaBytes int64
	// Members lists every gossip member (servers and agents) the server's
	// pool knows. Nil when there is no pool (tests).
	Members func() []GossipMember
	// PluginStore holds the third-party plugin executables this server
	// serves to the others (PluginBlob). Nil: it serves none.
	PluginStore *pluginstore.Store
	// FeatureLevel is the store feature level the servers' feature gate
	// allows now. Nil in tests.
	FeatureLevel func() (int, error)
}

// Service answers the admin protocol for one server.
type Service struct {
	cfg ServiceConfig
	hb  *heartbeats
}

// NewService starts watching raft's heartbeat observations, which is how
// the leader knows which followers it cannot reach; call Close to stop.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, hb: watchHeartbeats(cfg.Node.Raft())}
}

// Close stops watching heartbeats.
func (s *Service) Close() { s.hb.stop() }

// Peers lists the raft configuration with leadership, gossip status and
// last contact as this server knows them (see the Contact constants).
func (s *Service) Peers(ctx context.Context, _ *PeersRequest) (*PeersResponse, error) {
	r := s.cfg.Node.Raft()
	conf, err := s.configuration(ctx)
	if err != nil {
		return nil, err
	}
	leaderAddr, leaderID := r.LeaderWithID()
	out := &PeersResponse{
		Self:          s.cfg.Node.ID(),
		State:         r.State().String(),
		Term:          r.CurrentTerm(),
		CommitIndex:   r.CommitIndex(),
		AppliedIndex:  s.cfg.Node.AppliedIndex(),
		LeaderID:      string(leaderID),
		LeaderAddress: string(leaderAddr),
		Peers:         s.peers(conf, string(leaderID)),
	}
	return out, nil
}

func (s *Service) configuration(ctx context.Context) (raft.Configuration, error) {
	f := s.cfg.Node.Raft().GetConfiguration()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return raft.Configuration{}, status.Errorf(codes.Unavailable, "reading the raft configuration: %v", err)
		}
		return f.Configuration(), nil
	case <-ctx.Done():
		return raft.Configuration{}, status.FromContextError(ctx.Err()).Err()
	}
}

func (s *Service) peers(conf raft.Configuration, leaderID string) []Peer {
	r := s.cfg.Node.Raft()
	self := s.cfg.Node.ID()
	isLeader := r.State() == raft.Leader
	var gossip map[string]string
	if s.cfg.Gossip != nil {
		gossip = s.cfg.Gossip()
	}
	now := s.cfg.Now()
	failing := s.hb.failing()
	var out []Peer
	for _, srv := range conf.Servers {
		p := Peer{
			ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter,
			Leader: string(srv.ID) == leaderID, Self: string(srv.ID) == self, Gossip: gossip[string(srv.ID)],
		}
		switch {
		case p.Self:
			p.Contact = ContactSelf
		case isLeader:
			p.Contact = ContactOK
			if last, ok := failing[srv.ID]; ok {
				p.Contact = ContactFailing
				p.SinceContact = since(now, last)
			}
		case p.Leader:
			p.Contact = ContactNever
			if last := r.LastContact(); !last.IsZero() {
				p.Contact = ContactHeard
				p.SinceContact = since(now, last)
			}
		default:
			p.Contact = ContactUnknown
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func since(now, t time.Time) *time.Duration {
	d := max(now.Sub(t), 0)
	return &d
}

// RemovePeer removes a server from the raft configuration; a follower
// forwards the request to the leader. It refuses an unknown ID, the leader itself (the operator stops it
// first: a stopping server hands leadership over), a server still alive in
// the gossip pool (the leader's reconciler would add it straight back), and
// a removal after which the voters this leader can reach are no longer a
// quorum of the remaining voters.
func (s *Service) RemovePeer(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, error) {
	if resp, forwarded, err := s.removeOnLeader(ctx, req); forwarded || err != nil {
		return resp, err
	}
	conf, err := s.configuration(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.checkRemoval(conf, req.ID); err != nil {
		return nil, err
	}
	if err := s.cfg.Node.RemoveServer(ctx, req.ID); err != nil {
		if errors.Is(err, raftnode.ErrUnknownOutcome) {
			return nil, status.Errorf(codes.Unknown, "removing %s: the outcome is unknown (%v): run `keelson raft peers` to see whether it is gone", req.ID, err)
		}
		return nil, status.Errorf(codes.Unavailable, "removing %s: %v", req.ID, err)
	}
	conf, err = s.configuration(ctx)
	if err != nil {
		return nil, err
	}
	_, leaderID := s.cfg.Node.Raft().LeaderWithID()
	return &RemovePeerResponse{Removed: req.ID, Peers: s.peers(conf, string(leaderID))}, nil
}

func (s *Service) checkRemoval(conf raft.Configuration, id string) error {
	self := s.cfg.Node.ID()
	var ids []string
	var target *raft.Server
	for i, srv := range conf.Servers {
		ids = append(ids, string(srv.ID))
		if string(srv.ID) == id {
			target = &conf.Servers[i]
		}
	}
	slices.Sort(ids)
	if target == nil {
		return status.Errorf(codes.NotFound, "no server %q in the raft configuration (servers: %s)", id, strings.Join(ids, ", "))
	}
	if s.cfg.Node.Raft().State() != raft.Leader {
		return status.Errorf(codes.Unavailable, "%s lost the raft leadership during remove-peer: run the command again", self)
	}
	if id == self {
		return status.Errorf(codes.FailedPrecondition, "%s is the leader this command runs on: stop it first (a stopping server hands leadership over), then run remove-peer on the new leader", id)
	}
	if g := s.gossipStatus(id); g == "alive" {
		return status.Errorf(codes.FailedPrecondition, "%s is alive in the gossip pool: the leader would add it back at once. Stop it first, then remove it", id)
	}
	var remaining, reachable []string
	var unreachable []string
	failing := s.hb.failing()
	for _, srv := range conf.Servers {
		if srv.Suffrage != raft.Voter || string(srv.ID) == id {
			continue
		}
		remaining = append(remaining, string(srv.ID))
		if _, bad := failing[srv.ID]; bad {
			unreachable = append(unreachable, string(srv.ID))
		} else {
			reachable = append(reachable, string(srv.ID))
		}
	}
	if quorum := len(remaining)/2 + 1; len(reachable) < quorum {
		return status.Errorf(codes.FailedPrecondition, "removing %s would leave %d voters of which this leader reaches only %d (%s), short of their quorum of %d: remove the unreachable voters (%s) first, or bring them back",
			id, len(remaining), len(reachable), strings.Join(reachable, ", "), quorum, strings.Join(unreachable, ", "))
	}
	return nil
}

func (s *Service) gossipStatus(id string) string {
	if s.cfg.Gossip == nil {
		return ""
	}
	return s.cfg.Gossip()[id]
}

// SaveSnapshot sends a snapshot file of the state after a linearizable read:
// it holds every write acknowledged before the call.
func (s *Service) SaveSnapshot(ctx context.Context, _ *SaveSnapshotRequest, send func(*SnapshotChunk) error) error {
	if _, err := s.cfg.Node.LinearizableRead(ctx); err != nil {
		return status.Errorf(codes.Unavailable, "a snapshot needs a linearizable read, which failed: %v (is there a raft leader? see `keelson raft peers`)", err)
	}
	v := s.cfg.Store.View()
	hdr, err := NewSnapshotHeader(v, s.cfg.Node.Term(), s.cfg.Node.ID(), s.cfg.Now())
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	if _, err := WriteSnapshotFile(chunkWriter(send), hdr, v); err != nil {
		return status.Errorf(codes.Internal, "streaming snapshot at index %d: %v", v.Index(), err)
	}
	return nil
}

// chunkWriter sends what is written as SnapshotChunks of bounded size.
type chunkWriter func(*SnapshotChunk) error

func (w chunkWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += snapshotChunkBytes {
		// SendMsg encodes the message before returning, so p can be reused.
		if err := w(&SnapshotChunk{Data: p[off:min(off+snapshotChunkBytes, len(p))]}); err != nil {
			return off, fmt.Errorf("sending snapshot: %w", err)
		}
	}
	return len(p), nil
}

// heartbeats tracks, on the leader, the followers whose heartbeats fail and
// when each was last reached, from raft's observations: hashicorp/raft
// keeps per-follower contact times private and reports only failures and
// recoveries.
type heartbeats struct {
	r   *raft.Raft
	obs *raft.Observer
	ch  chan raft.Observation
	// done is closed when the goroutine ends.
	done chan struct{}
	quit chan struct{}

	mu   sync.Mutex
	last map[raft.ServerID]time.Time
}

func watchHeartbeats(r *raft.Raft) *heartbeats {
	h := &heartbeats{r: r, ch: make(chan raft.Observation, 64), done: make(chan struct{}), quit: make(chan struct{}),
		last: map[raft.ServerID]time.Time{}}
	h.obs = raft.NewObserver(h.ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation, raft.PeerObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(h.obs)
	go h.run()
	return h
}

func (h *heartbeats) run() {
	defer close(h.done)
	for {
		select {
		case <-h.quit:
			return
		case o := <-h.ch:
			h.observe(o.Data)
		}
	}
}

func (h *heartbeats) observe(data any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := data.(type) {
	case raft.FailedHeartbeatObservation:
		h.last[d.PeerID] = d.LastContact
	case raft.ResumedHeartbeatObservation:
		delete(h.last, d.PeerID)
	case raft.PeerObservation:
		if d.Removed {
			delete(h.last, d.Peer.ID)
		}
	case raft.LeaderObservation:
		// A new leadership replicates from scratch; what an earlier one
		// saw no longer applies.
		clear(h.last)
	}
}

// failing returns the followers whose latest heartbeat failed, with the time
// each was last reached.
func (h *heartbeats) failing() map[raft.ServerID]time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.last)
}

func (h *heartbeats) stop() {
	h.r.DeregisterObserver(h.obs)
	close(h.quit)
	<-h.done
}
