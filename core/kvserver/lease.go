package kvserver

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// maxLeaseTTL is etcd's upper bound on a lease's TTL, in seconds.
const maxLeaseTTL = 9_000_000_000

// lessor keeps lease deadlines on the leader. Deadlines are wall-clock and so
// never enter the state machine: the leader decides that a lease expired and
// proposes CmdLeaseExpire. Like etcd, a new leader restarts every lease's
// full TTL, so a lease never expires early because leadership moved.
//
// KeepAlive is served by the leader from this table without a raft write:
// a renewal every few seconds per lease would otherwise cost a log entry
// each, which is exactly what etcd avoids too.
type lessor struct {
	s  *Server
	mu sync.Mutex
	// term is the raft term the deadlines belong to; 0 when not leader.
	term      uint64
	deadlines map[int64]time.Time
}

func newLessor(s *Server) *lessor { return &lessor{s: s, deadlines: map[int64]time.Time{}} }

// RunLessor expires leases for one raft term this server leads, until ctx
// ends (leadership lost or the server stopping); core/server/leader.go
// starts it with the other leader duties. Deadlines start afresh each term.
func (s *Server) RunLessor(ctx context.Context, term uint64) {
	l := s.lessor
	defer func() {
		l.mu.Lock()
		l.term, l.deadlines = 0, map[int64]time.Time{}
		l.mu.Unlock()
	}()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		l.tick(ctx, term)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick reconciles the deadline table with the leases in the state machine and
// expires the overdue ones.
func (l *lessor) tick(ctx context.Context, term uint64) {
	r := l.s.raft
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l.mu.Lock()
	known := l.term
	l.mu.Unlock()
	if term != known {
		// Once per term: the barrier makes the view include every lease
		// granted in earlier terms. Within the term the leader's own view
		// already holds everything it committed, so ticks read it directly.
		if _, err := r.LinearizableRead(ctx); err != nil {
			return
		}
	}
	leases := l.s.store.View().Leases()
	now := time.Now()
	var expired []int64
	l.mu.Lock()
	if term != l.term {
		l.term, l.deadlines = term, map[int64]time.Time{}
	}
	live := make(map[int64]bool, len(leases))
	for _, le := range leases {
		live[le.ID] = true
		d, ok := l.deadlines[le.ID]
		if !ok {
			d = now.Add(time.Duration(le.TTL) * time.Second)
			l.deadlines[le.ID] = d
		}
		if now.After(d) && len(expired) < 1000 { // etcd revokes at most 1000 leases/s
			expired = append(expired, le.ID)
		}
	}
	for id := range l.deadlines {
		if !live[id] {
			delete(l.deadlines, id)
		}
	}
	l.mu.Unlock()
	for _, id := range expired {
		if _, err := l.s.propose(ctx, fsm.CmdLeaseExpire, &pb.LeaseRevokeRequest{ID: id}); err != nil {
			l.s.log.Warn("expiring lease", "lease", id, "err", err)
			return
		}
		l.s.log.Debug("lease expired", "lease", id)
	}
}

// renew restarts a lease's TTL; it reports the TTL, or 0 if the lease is
// gone. A follower renews through fwd, its client stream's forwarder.
func (l *lessor) renew(ctx context.Context, id int64, fwd *keepAliveForwarder) (int64, error) {
	if !l.s.raft.IsLeader() {
		return fwd.renew(ctx, id)
	}
	if _, err := l.s.raft.LinearizableRead(ctx); err != nil {
		return 0, toGRPCError(err)
	}
	le, _, ok := l.s.store.View().Lease(id)
	if !ok {
		return 0, nil
	}
	l.mu.Lock()
	l.deadlines[id] = time.Now().Add(time.Duration(le.TTL) * time.Second)
	l.mu.Unlock()
	return le.TTL, nil
}

// remaining is the lease's time left in whole seconds (rounded up), or its
// full TTL when the leader has not started tracking it yet.
func (l *lessor) remaining(le fsm.Lease) int64 {
	l.mu.Lock()
	d, ok := l.deadlines[le.ID]
	l.mu.Unlock()
	if !ok {
		return le.TTL
	}
	left := time.Until(d)
	if left <= 0 {
		return 0
	}
	return int64((left + time.Second - 1) / time.Second)
}

// LeaseGrant creates a lease. The leader picks the ID when the client does
// not, so the state machine stays free of randomness.
func (s *Server) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > maxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	req := &pb.LeaseGrantRequest{ID: r.ID, TTL: max(r.TTL, int64((s.cfg.LeaseMinTTL+time.Second-1)/time.Second))}
	if req.ID < 0 {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	if err := s.checkQuota(ctx, fsm.LeaseCost); err != nil {
		return nil, err
	}
	if req.ID == 0 {
		v := s.store.View()
		for {
			req.ID = rand.Int64N(1<<62) + 1
			if _, _, taken := v.Lease(req.ID); !taken {
				break
			}
		}
	}
	res, err := s.propose(ctx, fsm.CmdLeaseGrant, req)
	if err != nil {
		return nil, err
	}
	s.lessor.mu.Lock()
	if s.lessor.term != 0 {
		s.lessor.deadlines[req.ID] = time.Now().Add(time.Duration(req.TTL) * time.Second)
	}
	s.lessor.mu.Unlock()
	return &pb.LeaseGrantResponse{Header: s.header(res.Rev), ID: req.ID, TTL: req.TTL}, nil
}

// LeaseRevoke deletes a lease and every key attached to it.
func (s *Server) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	res, err := s.propose(ctx, fsm.CmdLeaseRevoke, r)
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: s.header(res.Rev)}, nil
}

// LeaseKeepAlive renews leases for as long as the client streams requests.
func (s *Server) LeaseKeepAlive(stream grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	fwd := &keepAliveForwarder{s: s}
	defer fwd.close()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := s.lessor.renew(stream.Context(), req.ID, fwd)
		if err != nil {
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{Header: s.header(s.store.View().Rev()), ID: req.ID, TTL: ttl}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// LeaseTimeToLive reports a lease's remaining TTL (-1 when it does not exist,
// as etcd) and optionally its keys.
func (s *Server) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if !s.raft.IsLeader() {
		// Only the leader knows how much time a lease has left.
		conn, err := s.leader.get()
		if err != nil {
			return nil, err
		}
		return pb.NewLeaseClient(conn).LeaseTimeToLive(ctx, r)
	}
	v, err := s.readView(ctx, false)
	if err != nil {
		return nil, err
	}
	le, keys, ok := v.Lease(r.ID)
	if !ok {
		return &pb.LeaseTimeToLiveResponse{Header: s.header(v.Rev()), ID: r.ID, TTL: -1}, nil
	}
	resp := &pb.LeaseTimeToLiveResponse{Header: s.header(v.Rev()), ID: r.ID, TTL: s.lessor.remaining(le), GrantedTTL: le.TTL}
	if r.Keys {
		resp.Keys = keys
	}
	return resp, nil
}

// LeaseLeases lists every lease.
func (s *Server) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	v, err := s.readView(ctx, false)
	if err != nil {
		return nil, err
	}
	leases := v.Leases()
	resp := &pb.LeaseLeasesResponse{Header: s.header(v.Rev()), Leases: make([]*pb.LeaseStatus, 0, len(leases))}
	for _, le := range leases {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: le.ID})
	}
	return resp, nil
}
