package ops

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Operator commands that change the raft configuration or leadership run on
// the leader. A server that is not the leader forwards them once, over the
// admin connection kind of the raft port (mutual TLS between servers), and
// marks the request forwarded: the leader it reaches answers itself or
// refuses, so a request never travels in a loop while leadership moves.

// TransferLeaderRequest asks the leader to hand leadership over, to ID when
// set, else to the most up-to-date follower raft picks.
type TransferLeaderRequest struct {
	ID        string `json:"id,omitempty"`
	Forwarded bool   `json:"forwarded,omitempty"`
}

// TransferLeaderResponse says who led before and who leads now.
type TransferLeaderResponse struct {
	From string `json:"from"`
	To   string `json:"to"`
	Term uint64 `json:"term"`
}

// peerConn is a gRPC connection to the admin service of the server whose
// raft address is addr, dialled through the raft port.
func (s *Service) peerConn(addr string) (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, a string) (net.Conn, error) { return s.cfg.Node.DialAdmin(ctx, a) }
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS is inside DialAdmin's connection
		grpc.WithContextDialer(dial),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("admin connection to %s: %w", addr, err)
	}
	return conn, nil
}

// leaderTarget returns where a leader-only request must go: "" when this
// server leads, else the leader's raft address. A forwarded request is
// refused when this server does not lead: leadership moved on the way.
func (s *Service) leaderTarget(what string, forwarded bool) (string, error) {
	r := s.cfg.Node.Raft()
	if r.State() == raft.Leader {
		return "", nil
	}
	addr, leader := r.LeaderWithID()
	self := s.cfg.Node.ID()
	if leader == "" {
		return "", status.Errorf(codes.FailedPrecondition, "%s needs a raft leader and this server (%s) knows none: wait for an election, or, if quorum is lost for good, stop the surviving server and run `keelson cluster-reset` on it", what, self)
	}
	if forwarded {
		return "", status.Errorf(codes.Unavailable, "%s was forwarded to %s, which is no longer the raft leader (the leader is now %s): run the command again", what, self, leader)
	}
	return string(addr), nil
}

// forward calls method on the leader at addr with req marked forwarded.
func forward[Resp any](ctx context.Context, s *Service, addr, method string, req any) (*Resp, error) {
	conn, err := s.peerConn(addr)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer conn.Close()
	out := new(Resp)
	if err := conn.Invoke(ctx, "/"+adminService+"/"+method, req, out); err != nil {
		st, _ := status.FromError(err)
		return nil, status.Errorf(st.Code(), "forwarded to the leader at %s: %s", addr, st.Message())
	}
	return out, nil
}

// TransferLeader hands leadership to req.ID (any follower when empty), from
// any server: a follower forwards the request to the leader.
func (s *Service) TransferLeader(ctx context.Context, req *TransferLeaderRequest) (*TransferLeaderResponse, error) {
	addr, err := s.leaderTarget("transfer-leader", req.Forwarded)
	if err != nil {
		return nil, err
	}
	if addr != "" {
		fwd := *req
		fwd.Forwarded = true
		return forward[TransferLeaderResponse](ctx, s, addr, "TransferLeader", &fwd)
	}
	conf, err := s.configuration(ctx)
	if err != nil {
		return nil, err
	}
	self := s.cfg.Node.ID()
	var f raft.Future
	switch target, err := transferTarget(conf, self, req.ID); {
	case err != nil:
		return nil, err
	case target == nil:
		f = s.cfg.Node.Raft().LeadershipTransfer()
	default:
		f = s.cfg.Node.Raft().LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := waitFuture(ctx, f); err != nil {
		return nil, status.Errorf(codes.Unavailable, "transferring leadership from %s: %v (the leader stays %s unless `keelson raft peers` says otherwise)", self, err, self)
	}
	leader := s.awaitNewLeader(ctx, self)
	return &TransferLeaderResponse{From: self, To: leader, Term: s.cfg.Node.Raft().CurrentTerm()}, nil
}

// awaitNewLeader waits, up to transferSettle, until this server knows a
// leader other than old; "" if none is known by then (the election is
// still running, which `keelson raft peers` shows).
func (s *Service) awaitNewLeader(ctx context.Context, old string) string {
	deadline := time.Now().Add(transferSettle)
	for {
		if _, id := s.cfg.Node.Raft().LeaderWithID(); id != "" && string(id) != old {
			return string(id)
		}
		if time.Now().After(deadline) {
			return ""
		}
		select {
		case <-ctx.Done():
			return ""
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// transferSettle bounds how long TransferLeader waits to name the new
// leader after raft completed the transfer.
const transferSettle = 5 * time.Second

// transferTarget checks the requested target: a voter of conf other than
// the leader self. It returns nil for "any follower".
func transferTarget(conf raft.Configuration, self, id string) (*raft.Server, error) {
	if id == "" {
		return nil, nil
	}
	if id == self {
		return nil, status.Errorf(codes.InvalidArgument, "%s already leads: name another server, or none to let raft pick the most up-to-date follower", id)
	}
	for i, srv := range conf.Servers {
		if string(srv.ID) != id {
			continue
		}
		if srv.Suffrage != raft.Voter {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not a voter and cannot lead", id)
		}
		return &conf.Servers[i], nil
	}
	return nil, status.Errorf(codes.NotFound, "no server %q in the raft configuration (see `keelson raft peers`)", id)
}

// waitFuture waits for f or ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// removeOnLeader runs RemovePeer where it must run: here on the leader,
// else forwarded to it.
func (s *Service) removeOnLeader(ctx context.Context, req *RemovePeerRequest) (*RemovePeerResponse, bool, error) {
	addr, err := s.leaderTarget("remove-peer", req.Forwarded)
	if err != nil || addr == "" {
		return nil, false, err
	}
	fwd := *req
	fwd.Forwarded = true
	resp, err := forward[RemovePeerResponse](ctx, s, addr, "RemovePeer", &fwd)
	return resp, true, err
}
