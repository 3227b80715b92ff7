package kvserver

import (
	"context"
	"fmt"
	"net"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// leaderConn keeps one gRPC connection to the current leader's etcd API,
// reached through the raft port's peer service (mutual TLS is inside the
// dialed connection). Followers use it for what only the leader can answer:
// lease keep-alives and remaining TTLs, which live in the leader's memory.
type leaderConn struct {
	raft Raft
	mu   sync.Mutex
	addr string
	conn *grpc.ClientConn
}

// get returns a connection to the leader, or ErrGRPCNoLeader.
func (l *leaderConn) get() (*grpc.ClientConn, error) {
	addr, _ := l.raft.Leader()
	if addr == "" {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil && l.addr == addr {
		return l.conn, nil
	}
	if l.conn != nil {
		l.conn.Close()
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS is inside DialPeer's connection
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return l.raft.DialPeer(ctx, a) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to leader %s: %w", addr, err)
	}
	l.addr, l.conn = addr, conn
	return conn, nil
}

func (l *leaderConn) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// forwardKeepAlive renews one lease on the leader.
func (s *Server) forwardKeepAlive(ctx context.Context, id int64) (int64, error) {
	conn, err := s.leader.get()
	if err != nil {
		return 0, err
	}
	ka, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
	if err != nil {
		return 0, err
	}
	defer ka.CloseSend()
	if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return 0, err
	}
	resp, err := ka.Recv()
	if err != nil {
		return 0, err
	}
	return resp.TTL, nil
}
