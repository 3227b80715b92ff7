package proto

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the fully qualified gRPC service name of protocol version 1.
const ServiceName = "keelson.plugin.v1.Plugin"

// Server is what a plugin process implements.
type Server interface {
	Describe(ctx context.Context) (Description, error)
	Configure(ctx context.Context, c Configuration) error
	// Run sends status updates until the plugin stops (after Stop) or fails.
	// A nil return means a clean stop; an error means the plugin failed.
	Run(ctx context.Context, send func(Status) error) error
	// Stop asks Run to return within grace.
	Stop(ctx context.Context, grace time.Duration) error
}

// GRPCPlugin is the go-plugin glue: Impl is served by plugins and nil in the
// host, which only dispenses *Client values.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Server
}

// BrokerUser is implemented by a plugin Server that dials services the
// host offers over go-plugin's broker (a node's gossip members).
type BrokerUser interface {
	UseBroker(b *plugin.GRPCBroker)
}

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(b *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return fmt.Errorf("proto: GRPCPlugin has no Impl to serve")
	}
	if u, ok := p.Impl.(BrokerUser); ok {
		u.UseBroker(b)
	}
	s.RegisterService(&serviceDesc, p.Impl)
	return nil
}

// GRPCClient returns a *Client on the host side.
func (p *GRPCPlugin) GRPCClient(_ context.Context, b *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return &Client{cc: cc, broker: b}, nil
}

// serviceDesc is written by hand because no protoc runs in this build; every
// message is a well-known type, so the default proto codec applies and
// nothing is registered globally.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*Server)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Describe", Handler: describeHandler},
		{MethodName: "Configure", Handler: configureHandler},
		{MethodName: "Stop", Handler: stopHandler},
		{MethodName: "Metrics", Handler: metricsHandler},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Run", Handler: runHandler, ServerStreams: true},
	},
}

func unary[Req any](srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor,
	method string, req *Req, call func(ctx context.Context, req *Req) (any, error)) (any, error) {
	if err := dec(req); err != nil {
		return nil, err
	}
	if icpt == nil {
		return call(ctx, req)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + ServiceName + "/" + method}
	return icpt(ctx, req, info, func(ctx context.Context, r any) (any, error) { return call(ctx, r.(*Req)) })
}

func describeHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	return unary(srv, ctx, dec, icpt, "Describe", &emptypb.Empty{}, func(ctx context.Context, _ *emptypb.Empty) (any, error) {
		d, err := srv.(Server).Describe(ctx)
		if err != nil {
			return nil, err
		}
		return toStruct(d)
	})
}

func configureHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	return unary(srv, ctx, dec, icpt, "Configure", &structpb.Struct{}, func(ctx context.Context, s *structpb.Struct) (any, error) {
		var c Configuration
		if err := fromStruct(s, &c); err != nil {
			return nil, err
		}
		if err := srv.(Server).Configure(ctx, c); err != nil {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	})
}

func stopHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	return unary(srv, ctx, dec, icpt, "Stop", &durationpb.Duration{}, func(ctx context.Context, d *durationpb.Duration) (any, error) {
		if err := srv.(Server).Stop(ctx, d.AsDuration()); err != nil {
			return nil, err
		}
		return &emptypb.Empty{}, nil
	})
}

// MetricsSource is implemented by a plugin Server that exposes Prometheus
// metrics (the SDK's does); the host reads them on its own scrapes.
type MetricsSource interface {
	// Metrics returns the process's metrics in the Prometheus text format.
	Metrics(ctx context.Context) ([]byte, error)
}

func metricsHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	return unary(srv, ctx, dec, icpt, "Metrics", &emptypb.Empty{}, func(ctx context.Context, _ *emptypb.Empty) (any, error) {
		ms, ok := srv.(MetricsSource)
		if !ok {
			return nil, status.Error(codes.Unimplemented, "this plugin exposes no metrics")
		}
		b, err := ms.Metrics(ctx)
		if err != nil {
			return nil, err
		}
		return wrapperspb.Bytes(b), nil
	})
}

func runHandler(srv any, stream grpc.ServerStream) error {
	if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
		return err
	}
	return srv.(Server).Run(stream.Context(), func(st Status) error {
		s, err := toStruct(st)
		if err != nil {
			return err
		}
		return stream.SendMsg(s)
	})
}

// Client is the host's view of one plugin.
type Client struct {
	cc     *grpc.ClientConn
	broker *plugin.GRPCBroker
	// member, when set, addresses one member of a group process (every
	// call carries it as MemberHeader); empty: the process itself.
	member string
}

// MemberHeader is the gRPC metadata key naming the member of a group
// process a call is for. A group process serves one keelson.plugin.v1
// service for all its members (gRPC has one service per name and
// connection), and routes each call by this header.
const MemberHeader = "keelson-member"

// Member returns a client for member name of the group process c talks to,
// over the same connection.
func (c *Client) Member(name string) *Client {
	m := *c
	m.member = name
	return &m
}

// MemberFromContext is the member a call is addressed to, on the plugin
// side ("" when the call is for the process itself).
func MemberFromContext(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(MemberHeader); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c *Client) ctx(ctx context.Context) context.Context {
	if c.member == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, MemberHeader, c.member)
}

// Broker is the plugin connection's broker, on which the host serves
// services to the plugin (ServeMembers).
func (c *Client) Broker() *plugin.GRPCBroker { return c.broker }

func (c *Client) method(name string) string { return "/" + ServiceName + "/" + name }

// Describe asks the plugin who it is.
func (c *Client) Describe(ctx context.Context) (Description, error) {
	out := &structpb.Struct{}
	if err := c.cc.Invoke(c.ctx(ctx), c.method("Describe"), &emptypb.Empty{}, out); err != nil {
		return Description{}, err
	}
	var d Description
	err := fromStruct(out, &d)
	return d, err
}

// Configure hands the plugin its API endpoint, identity, term and config.
func (c *Client) Configure(ctx context.Context, cfg Configuration) error {
	in, err := toStruct(cfg)
	if err != nil {
		return err
	}
	return c.cc.Invoke(c.ctx(ctx), c.method("Configure"), in, &emptypb.Empty{})
}

// Stop asks the plugin to stop within grace.
func (c *Client) Stop(ctx context.Context, grace time.Duration) error {
	return c.cc.Invoke(c.ctx(ctx), c.method("Stop"), durationpb.New(grace), &emptypb.Empty{})
}

// Metrics reads the plugin's metrics in the Prometheus text format; a
// plugin that exposes none answers codes.Unimplemented.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	out := &wrapperspb.BytesValue{}
	if err := c.cc.Invoke(c.ctx(ctx), c.method("Metrics"), &emptypb.Empty{}, out); err != nil {
		return nil, err
	}
	return out.GetValue(), nil
}

// Run starts the plugin; the stream carries its status until it stops.
// Cancelling ctx ends the stream, not the plugin.
func (c *Client) Run(ctx context.Context) (*StatusStream, error) {
	desc := &serviceDesc.Streams[0]
	s, err := c.cc.NewStream(c.ctx(ctx), desc, c.method("Run"))
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil {
		return nil, err
	}
	if err := s.CloseSend(); err != nil {
		return nil, err
	}
	return &StatusStream{s: s}, nil
}

// StatusStream is the host's end of a Run call.
type StatusStream struct {
	s grpc.ClientStream
}

// Recv returns the next status; io.EOF after a clean stop.
func (r *StatusStream) Recv() (Status, error) {
	out := &structpb.Struct{}
	if err := r.s.RecvMsg(out); err != nil {
		return Status{}, err
	}
	var st Status
	err := fromStruct(out, &st)
	return st, err
}

func toStruct(v any) (*structpb.Struct, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("proto: encode %T: %w", v, err)
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("proto: encode %T: %w", v, err)
	}
	return s, nil
}

func fromStruct(s *structpb.Struct, v any) error {
	b, err := protojson.Marshal(s)
	if err != nil {
		return fmt.Errorf("proto: decode %T: %w", v, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("proto: decode %T: %w", v, err)
	}
	return nil
}
