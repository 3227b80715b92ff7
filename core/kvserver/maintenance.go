package kvserver

import (
	"context"
	"errors"
	"hash/fnv"
	"time"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// compactEvery is how often the leader checks the history window.
const compactEvery = 5 * time.Second

// MemberID derives a stable etcd member ID from a raft server ID.
func MemberID(serverID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(serverID))
	return h.Sum64()
}

// RunCompactor keeps the retained history within HistoryRevisions and
// HistoryBytes for one raft term this server leads, until ctx ends, so a
// cluster without kube-apiserver's compactor (etcdctl users) still has
// bounded memory; core/server/leader.go starts it with the other leader
// duties. Between two checks the history may grow by what is written in
// compactEvery.
func (s *Server) RunCompactor(ctx context.Context, _ uint64) {
	if s.cfg.HistoryRevisions <= 0 && s.cfg.HistoryBytes <= 0 {
		return
	}
	t := time.NewTicker(compactEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		target, ok := s.compactTarget(s.store.View())
		if !ok {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.propose(cctx, fsm.CmdCompact, &pb.CompactionRequest{Revision: target})
		cancel()
		if err != nil && !errors.Is(toGRPCError(err), toGRPCError(fsm.ErrCompacted)) {
			s.log.Warn("compacting history", "revision", target, "err", err)
			continue
		}
		s.log.Debug("compacted history", "revision", target)
	}
}

// compactTarget is the revision to compact v to so that its history fits
// both limits, if it does not already.
func (s *Server) compactTarget(v *fsm.View) (int64, bool) {
	var target int64
	if s.cfg.HistoryRevisions > 0 {
		target = v.Rev() - s.cfg.HistoryRevisions
	}
	if s.cfg.HistoryBytes > 0 {
		target = max(target, v.HistoryKeepWithin(s.cfg.HistoryBytes))
	}
	return target, target > v.CompactRev()
}

// Status reports this member's state; kube-apiserver reads Version from it
// to decide which etcd features it may use.
func (s *Server) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	v := s.store.View()
	_, leaderID := s.raft.Leader()
	resp := &pb.StatusResponse{
		Header:           s.header(v.Rev()),
		Version:          s.cfg.Version,
		RaftIndex:        v.Index(),
		RaftTerm:         s.raft.Term(),
		RaftAppliedIndex: v.Index(),
		StorageVersion:   s.cfg.Version,
		DbSize:           v.Size(),
		DbSizeInUse:      v.Size(),
		DbSizeQuota:      s.cfg.QuotaBytes,
		Errors:           alarmStrings(v.Alarms()),
	}
	if leaderID != "" {
		resp.Leader = MemberID(leaderID)
	}
	return resp, nil
}

// Defragment has nothing to do: the state is an in-memory persistent tree
// whose garbage the Go runtime collects. It answers as etcd does on success.
func (s *Server) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return &pb.DefragmentResponse{Header: s.header(s.store.View().Rev())}, nil
}

// HashKV returns the digest of the key-value history up to the requested
// revision (0: current), as etcd does: members with the same compact
// revision report the same hash for the same revision, however far each has
// applied since. That is how the e2e suite checks that replicas agree while
// kube-apiserver keeps writing.
func (s *Server) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	v, err := s.readView(ctx, true)
	if err != nil {
		return nil, err
	}
	rev := r.Revision
	if rev == 0 {
		rev = v.Rev()
	}
	h, err := v.HashKV(rev)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.HashKVResponse{
		Header:          s.header(v.Rev()),
		Hash:            uint32(h ^ h>>32),
		CompactRevision: v.CompactRev(),
		HashRevision:    rev,
	}, nil
}

// MemberList lists the members known to this server.
func (s *Server) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	resp := &pb.MemberListResponse{Header: s.header(s.store.View().Rev())}
	if s.cfg.Members != nil {
		resp.Members = s.cfg.Members()
	} else {
		resp.Members = []*pb.Member{{ID: s.cfg.MemberID, Name: s.cfg.MemberName, ClientURLs: s.cfg.ClientURLs}}
	}
	return resp, nil
}
