package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/core/raftnode"
)

// Third-party plugin executables installed with `keelson plugin install`
// travel between servers over the admin connection kind of the raft port:
// mutual TLS that accepts only servers' peer certificates, so a node agent's
// credentials (or a plugin's) can never read them. The receiver checks the
// SHA-256 before the blob gets its name (pluginstore.Store.Put).

// PluginBlobRequest asks for the plugin executable with this checksum.
type PluginBlobRequest struct {
	SHA256 string `json:"sha256"`
}

// PluginBlobChunk is a piece of the executable, in order.
type PluginBlobChunk struct {
	Data []byte `json:"data"`
}

// PluginBlob streams the executable sum from this server's plugin store.
func (s *Service) PluginBlob(_ context.Context, req *PluginBlobRequest, send func(*PluginBlobChunk) error) error {
	if s.cfg.PluginStore == nil {
		return status.Error(codes.Unavailable, "this server has no plugin store")
	}
	if err := pluginstore.ValidSum(req.SHA256); err != nil {
		return status.Errorf(codes.InvalidArgument, "sha256: %v", err)
	}
	f, err := s.cfg.PluginStore.Open(req.SHA256)
	if errors.Is(err, pluginstore.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	} else if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	defer f.Close()
	buf := make([]byte, snapshotChunkBytes)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if serr := send(&PluginBlobChunk{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return status.Errorf(codes.Internal, "reading plugin executable %s: %v", req.SHA256, err)
		}
	}
}

// Dialer opens a connection to the admin service of the server at addr.
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// FetchPluginBlob copies the executable sum from the admin service at addr
// into store; nothing is stored unless the whole content has checksum sum.
func FetchPluginBlob(ctx context.Context, dial Dialer, addr string, store *pluginstore.Store, sum string) error {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS is inside dial's connection
		grpc.WithContextDialer(dial),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(jsonCodec{})))
	if err != nil {
		return fmt.Errorf("admin connection to %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(ctx, &adminServiceDesc.Streams[1], "/"+adminService+"/PluginBlob")
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&PluginBlobRequest{SHA256: sum}); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return store.Put(sum, &chunkReader{stream: stream})
}

// chunkReader reads the PluginBlob stream as one byte stream.
type chunkReader struct {
	stream grpc.ClientStream
	rest   []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		c := new(PluginBlobChunk)
		if err := r.stream.RecvMsg(c); err != nil {
			if err == io.EOF {
				return 0, io.EOF
			}
			return 0, errors.New(status.Convert(err).Message())
		}
		r.rest = c.Data
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// FetchPluginBlobFromPeers copies the executable sum into store from the
// first other server of the raft configuration that has it.
func FetchPluginBlobFromPeers(ctx context.Context, node *raftnode.Node, store *pluginstore.Store, sum string) error {
	f := node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return fmt.Errorf("reading the raft configuration: %w", err)
	}
	dial := func(ctx context.Context, a string) (net.Conn, error) { return node.DialAdmin(ctx, a) }
	var errs []error
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == node.ID() {
			continue
		}
		err := FetchPluginBlob(ctx, dial, string(srv.Address), store, sum)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv.ID, err))
	}
	if len(errs) == 0 {
		return fmt.Errorf("plugin executable %s: no other server to fetch it from", sum)
	}
	return fmt.Errorf("plugin executable %s is on no other server that answered: %w", sum, errors.Join(errs...))
}
