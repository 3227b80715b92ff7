package proto

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// MembersServiceName is the gRPC service a node's host serves to its node
// plugins over go-plugin's broker: the node's view of the gossip pool, so
// that a node plugin (the LoadBalancer announcer) reacts to a member
// failing as fast as gossip notices it, not when a Node condition changes.
//
//	Watch(Empty) returns (stream Struct)   // MemberList, then one per change
const MembersServiceName = "keelson.plugin.v1.Members"

// MemberStatus is a gossip member's state as the node sees it.
type MemberStatus string

// The member states, serf's: a failed member stopped answering probes
// (and did not refute the suspicion in time), a leaving or left one said
// goodbye.
const (
	MemberAlive   MemberStatus = "alive"
	MemberLeaving MemberStatus = "leaving"
	MemberLeft    MemberStatus = "left"
	MemberFailed  MemberStatus = "failed"
)

// Member is one member of the gossip pool.
type Member struct {
	// Name is the member's node name.
	Name string `json:"name"`
	// Addr is the IP the member gossips from.
	Addr   string       `json:"addr,omitempty"`
	Server bool         `json:"server,omitempty"`
	Status MemberStatus `json:"status"`
}

// MemberList is one message of the Watch stream: every member known.
type MemberList struct {
	Members []Member `json:"members"`
}

// MembersServer is what the host implements: Watch sends the current list,
// then a new one after every change, until ctx ends.
type MembersServer interface {
	Watch(ctx context.Context, send func(MemberList) error) error
}

var membersDesc = grpc.ServiceDesc{
	ServiceName: MembersServiceName,
	HandlerType: (*MembersServer)(nil),
	Streams: []grpc.StreamDesc{
		{StreamName: "Watch", Handler: membersWatchHandler, ServerStreams: true},
	},
}

func membersWatchHandler(srv any, stream grpc.ServerStream) error {
	if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	return srv.(MembersServer).Watch(stream.Context(), func(l MemberList) error {
		s, err := toStruct(l)
		if err != nil {
			return err
		}
		return stream.SendMsg(s)
	})
}

// ServeMembers serves impl on a new broker connection and returns its id,
// which the host passes in Configuration.MembersBroker. The server stops
// when the plugin's connection closes.
func ServeMembers(b *plugin.GRPCBroker, impl MembersServer) uint32 {
	id := b.NextId()
	go b.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		s.RegisterService(&membersDesc, impl)
		return s
	})
	return id
}

// MembersClient is a plugin's end of the Members service.
type MembersClient struct {
	cc *grpc.ClientConn
}

// DialMembers connects to the host's Members service at broker id.
func DialMembers(b *plugin.GRPCBroker, id uint32) (*MembersClient, error) {
	cc, err := b.Dial(id)
	if err != nil {
		return nil, fmt.Errorf("proto: dialing the host's members service (broker id %d): %w", id, err)
	}
	return &MembersClient{cc: cc}, nil
}

// Close closes the connection.
func (c *MembersClient) Close() error { return c.cc.Close() }

// Watch calls fn with the member list and after every change until ctx
// ends or the stream breaks (its error is returned; ctx's when it ended).
func (c *MembersClient) Watch(ctx context.Context, fn func(MemberList)) error {
	s, err := c.cc.NewStream(ctx, &membersDesc.Streams[0], "/"+MembersServiceName+"/Watch")
	if err != nil {
		return err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	if err := s.CloseSend(); err != nil {
		return err
	}
	for {
		out := &structpb.Struct{}
		if err := s.RecvMsg(out); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		var l MemberList
		if err := fromStruct(out, &l); err != nil {
			return err
		}
		fn(l)
	}
}
