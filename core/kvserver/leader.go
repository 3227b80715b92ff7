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

// keepAliveForwarder renews leases on the leader for one client's
// LeaseKeepAlive stream on a follower, over one long-lived stream to the
// leader: a stream per renewal would cost a stream and its goroutines on
// both sides for as long as the client's stream lives. The stream is
// reopened when the leader changes or it fails. Not safe for concurrent
// use: one client stream renews one lease at a time.
type keepAliveForwarder struct {
	s      *Server
	conn   *grpc.ClientConn
	stream pb.Lease_LeaseKeepAliveClient
	cancel context.CancelFunc
}

// renew renews lease id on the leader; ctx is the client stream's context,
// which the forwarded stream lives within.
func (f *keepAliveForwarder) renew(ctx context.Context, id int64) (int64, error) {
	conn, err := f.s.leader.get()
	if err != nil {
		return 0, err
	}
	if f.stream == nil || f.conn != conn {
		f.close()
		sctx, cancel := context.WithCancel(ctx)
		stream, err := pb.NewLeaseClient(conn).LeaseKeepAlive(sctx)
		if err != nil {
			cancel()
			return 0, err
		}
		f.conn, f.stream, f.cancel = conn, stream, cancel
	}
	if err := f.stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		f.close()
		return 0, err
	}
	resp, err := f.stream.Recv()
	if err != nil {
		f.close()
		return 0, err
	}
	return resp.TTL, nil
}

// close ends the forwarded stream, if any.
func (f *keepAliveForwarder) close() {
	if f.cancel != nil {
		_ = f.stream.CloseSend()
		f.cancel()
	}
	f.conn, f.stream, f.cancel = nil, nil, nil
}
