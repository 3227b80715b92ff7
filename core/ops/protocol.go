package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// The admin protocol is gRPC with JSON messages, defined by hand (no
// protoc): a server serves it only on DATA_DIR/admin.sock (mode 0600), so
// only a local user who can read the data dir reaches it. The codec is forced
// on that server and on its clients only; nothing is registered globally.

const adminService = "keelson.ops.v1.Admin"

// PeersRequest asks for the raft configuration as the answering server
// sees it.
type PeersRequest struct{}

// Contact values of Peer.Contact: what the answering server knows about
// when it last heard from that peer.
const (
	// ContactSelf: the answering server itself.
	ContactSelf = "self"
	// ContactOK: the answering server is the leader and its latest heartbeat
	// to the peer succeeded (heartbeats go out every HeartbeatTimeout/10;
	// hashicorp/raft does not expose their times while they succeed).
	ContactOK = "ok"
	// ContactFailing: the answering server is the leader and its heartbeats
	// to the peer fail; SinceContact is the time since the last success.
	ContactFailing = "failing"
	// ContactHeard: the peer is the leader and the answering server, a
	// follower, last heard from it SinceContact ago.
	ContactHeard = "heard"
	// ContactNever: the peer is the leader and the answering server has not
	// heard from it since it started.
	ContactNever = "never"
	// ContactUnknown: a follower knows nothing of other followers; ask the
	// leader.
	ContactUnknown = "unknown"
)

// Peer is one server of the raft configuration.
type Peer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
	Leader  bool   `json:"leader"`
	Self    bool   `json:"self"`
	// Gossip is the peer's status in the serf pool (alive, failed, left,
	// leaving), empty when the pool does not know it.
	Gossip string `json:"gossip,omitempty"`
	// Contact is one of the Contact constants.
	Contact      string         `json:"contact"`
	SinceContact *time.Duration `json:"sinceContact,omitempty"`
}

// PeersResponse is the raft configuration and leadership as one server sees
// them.
type PeersResponse struct {
	Self          string `json:"self"`
	State         string `json:"state"` // Leader, Follower, Candidate
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commitIndex"`
	AppliedIndex  uint64 `json:"appliedIndex"`
	LeaderID      string `json:"leaderId,omitempty"`
	LeaderAddress string `json:"leaderAddress,omitempty"`
	Peers         []Peer `json:"peers"`
}

// RemovePeerRequest names the server to remove from the raft configuration.
type RemovePeerRequest struct {
	ID string `json:"id"`
	// Forwarded marks a request a follower passed to the leader.
	Forwarded bool `json:"forwarded,omitempty"`
}

// RemovePeerResponse is the configuration after the removal.
type RemovePeerResponse struct {
	Removed string `json:"removed"`
	Peers   []Peer `json:"peers"`
}

// SaveSnapshotRequest asks for a snapshot file of a linearizable view.
type SaveSnapshotRequest struct{}

// SnapshotChunk is a piece of the snapshot file, in order.
type SnapshotChunk struct {
	Data []byte `json:"data"`
}

// jsonCodec marshals the admin messages as JSON.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)      { return json.Marshal(v) }
func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
func (jsonCodec) Name() string                       { return "json" }

// adminHandler is what the service descriptor dispatches to; *Service
// implements it.
type adminHandler interface {
	Peers(context.Context, *PeersRequest) (*PeersResponse, error)
	RemovePeer(context.Context, *RemovePeerRequest) (*RemovePeerResponse, error)
	TransferLeader(context.Context, *TransferLeaderRequest) (*TransferLeaderResponse, error)
	ServerStatus(context.Context, *ServerStatusRequest) (*ServerStatus, error)
	ClusterStatus(context.Context, *ClusterStatusRequest) (*ClusterStatus, error)
	SaveSnapshot(context.Context, *SaveSnapshotRequest, func(*SnapshotChunk) error) error
	PluginBlob(context.Context, *PluginBlobRequest, func(*PluginBlobChunk) error) error
}

func unary[Req, Resp any](call func(adminHandler, context.Context, *Req) (*Resp, error), method string) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: method,
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := srv.(adminHandler)
			if icpt == nil {
				return call(h, ctx, req)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + adminService + "/" + method}
			return icpt(ctx, req, info, func(ctx context.Context, req any) (any, error) {
				return call(h, ctx, req.(*Req))
			})
		},
	}
}

var adminServiceDesc = grpc.ServiceDesc{
	ServiceName: adminService,
	HandlerType: (*adminHandler)(nil),
	Methods: []grpc.MethodDesc{
		unary(adminHandler.Peers, "Peers"),
		unary(adminHandler.RemovePeer, "RemovePeer"),
		unary(adminHandler.TransferLeader, "TransferLeader"),
		unary(adminHandler.ServerStatus, "ServerStatus"),
		unary(adminHandler.ClusterStatus, "ClusterStatus"),
	},
	Streams: []grpc.StreamDesc{{
		StreamName:    "SaveSnapshot",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			req := new(SaveSnapshotRequest)
			if err := stream.RecvMsg(req); err != nil {
				return err
			}
			return srv.(adminHandler).SaveSnapshot(stream.Context(), req, func(c *SnapshotChunk) error { return stream.SendMsg(c) })
		},
	}, {
		StreamName:    "PluginBlob",
		ServerStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error {
			req := new(PluginBlobRequest)
			if err := stream.RecvMsg(req); err != nil {
				return err
			}
			return srv.(adminHandler).PluginBlob(stream.Context(), req, func(c *PluginBlobChunk) error { return stream.SendMsg(c) })
		},
	}},
}

// NewGRPCServer returns a gRPC server that serves s with the admin codec.
// Serve it on AdminSocket only.
func NewGRPCServer(s *Service) *grpc.Server {
	g := grpc.NewServer(grpc.ForceServerCodec(jsonCodec{}))
	g.RegisterService(&adminServiceDesc, s)
	return g
}

// Client talks to the server running on a data dir.
type Client struct {
	sock string
	conn *grpc.ClientConn
}

// Dial connects to the admin socket of the server running on dataDir. The
// connection is made lazily; calls report a server that does not answer.
func Dial(dataDir string) (*Client, error) {
	sock, err := filepath.Abs(AdminSocket(dataDir))
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", dataDir, err)
	}
	if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(dataDir, etcdSock)); err == nil {
			return nil, fmt.Errorf("no admin socket in --data-dir %s (%s missing, but etcd.sock exists): the server is not running, or runs a keelson without operator commands", dataDir, sock)
		}
		return nil, fmt.Errorf("no server is running on --data-dir %s (%s missing): start it, or pass the --data-dir it runs with (or set KEELSON_DATA_DIR)", dataDir, sock)
	} else if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w (run as the user the server runs as)", sock, err)
	}
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", sock, err)
	}
	return &Client{sock: sock, conn: conn}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) err(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("no server answers on %s: is it running? (a server that crashed leaves the socket behind): %s", c.sock, st.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("%s: %s (run as the user the server runs as)", c.sock, st.Message())
	default:
		return errors.New(st.Message())
	}
}

func invoke[Resp any](ctx context.Context, c *Client, method string, req any) (*Resp, error) {
	out := new(Resp)
	if err := c.conn.Invoke(ctx, "/"+adminService+"/"+method, req, out); err != nil {
		return nil, c.err(err)
	}
	return out, nil
}

// Peers returns the raft configuration as the server sees it.
func (c *Client) Peers(ctx context.Context) (*PeersResponse, error) {
	return invoke[PeersResponse](ctx, c, "Peers", &PeersRequest{})
}

// RemovePeer removes server id from the raft configuration; see
// Service.RemovePeer for what it refuses.
func (c *Client) RemovePeer(ctx context.Context, id string) (*RemovePeerResponse, error) {
	return invoke[RemovePeerResponse](ctx, c, "RemovePeer", &RemovePeerRequest{ID: id})
}

// TransferLeader hands leadership to server id, or to the follower raft
// picks when id is empty.
func (c *Client) TransferLeader(ctx context.Context, id string) (*TransferLeaderResponse, error) {
	return invoke[TransferLeaderResponse](ctx, c, "TransferLeader", &TransferLeaderRequest{ID: id})
}

// ClusterStatus returns every raft server's own report, gathered by the
// server the client talks to.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	return invoke[ClusterStatus](ctx, c, "ClusterStatus", &ClusterStatusRequest{})
}

// SaveSnapshot streams a snapshot file of the server's current
// (linearizable) state to w.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	desc := &adminServiceDesc.Streams[0]
	stream, err := c.conn.NewStream(ctx, desc, "/"+adminService+"/SaveSnapshot")
	if err != nil {
		return c.err(err)
	}
	if err := stream.SendMsg(&SaveSnapshotRequest{}); err != nil {
		return c.err(err)
	}
	if err := stream.CloseSend(); err != nil {
		return c.err(err)
	}
	for {
		var chunk SnapshotChunk
		err := stream.RecvMsg(&chunk)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.err(err)
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return fmt.Errorf("writing snapshot: %w", err)
		}
	}
}
