// Package kvserver serves the etcd v3 gRPC API (KV, Watch, Lease,
// Maintenance, Cluster) from the replicated state machine: writes become raft
// commands, reads come from the local fsm view after a linearizable barrier,
// watches stream the fsm's event history.
//
// The semantics are etcd's, because the embedded kube-apiserver and operators'
// etcdctl rely on them: global revisions, compare-and-swap transactions,
// compaction errors, leases, watch progress notifications.
package kvserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Raft is what the server needs from the consensus layer; *raftnode.Node
// implements it.
type Raft interface {
	// Apply proposes cmd and returns the state machine's result once it is
	// committed and applied locally.
	Apply(ctx context.Context, cmd []byte) (result any, index uint64, err error)
	// LinearizableRead returns once the local state machine reflects every
	// write committed before the call.
	LinearizableRead(ctx context.Context) (uint64, error)
	IsLeader() bool
	Term() uint64
	Leader() (addr, id string)
	// DialPeer connects to another server's peer service (where this
	// server's gRPC is also served), for requests only the leader answers.
	DialPeer(ctx context.Context, raftAddr string) (net.Conn, error)
}

// Config configures a Server.
type Config struct {
	// ClusterID and MemberID fill etcd response headers.
	ClusterID, MemberID uint64
	// MemberName and ClientURLs describe this member in MemberList.
	MemberName string
	ClientURLs []string
	// Members, when set, lists every member for MemberList (from the raft
	// configuration); otherwise only this member is listed.
	Members func() []*pb.Member
	// MaxRequestBytes bounds request size (etcd: 1.5 MiB).
	MaxRequestBytes int
	// MaxTxnOps bounds the operations in one transaction (etcd: 128).
	MaxTxnOps int
	// HistoryRevisions is the history window the leader keeps by compacting
	// older revisions; 0 disables automatic compaction.
	HistoryRevisions int64
	// HistoryBytes bounds the same history by its accounted size (every
	// retained event's key, value and overhead): the leader also compacts
	// the oldest revisions past it. 0 leaves the size unbounded.
	HistoryBytes int64
	// QuotaBytes is the store size past which this server raises the
	// NOSPACE alarm (etcd's --quota-backend-bytes); 0 disables the check.
	QuotaBytes int64
	// CommandGate, when set, is asked before every proposal whether every
	// server can apply the command type (the cluster-wide feature gate);
	// a refusal fails the request with FailedPrecondition.
	CommandGate func(typ byte) error
	// LeaseMinTTL is the shortest lease granted.
	LeaseMinTTL time.Duration
	// WatchQueueEvents and WatchQueueBytes cap the events (and their
	// estimated bytes) one watch may have queued and not yet written to its
	// client; a watch at its cap reads no further until the client reads
	// (as etcd's unsynced watchers), and is canceled with etcd's compacted
	// error once compaction passes it. WatchStreamQueueBytes caps the bytes
	// queued on one stream for all its watches together.
	WatchQueueEvents      int64
	WatchQueueBytes       int64
	WatchStreamQueueBytes int64
	// ProgressNotifyInterval is how often watchers that asked for progress
	// notifications get one (etcd: 10m).
	ProgressNotifyInterval time.Duration
	// Version is reported by Maintenance.Status; kube-apiserver reads it to
	// decide which etcd features to use.
	Version string
	Logger  *slog.Logger
}

// EtcdVersion is the etcd release whose API and semantics the server
// implements, reported through Maintenance.Status: kube-apiserver decides
// from it which etcd features (progress requests, ...) it may use.
const EtcdVersion = "3.6.0"

// DefaultConfig returns etcd's defaults.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:        1536 * 1024,
		MaxTxnOps:              128,
		HistoryRevisions:       100000,
		HistoryBytes:           128 << 20,
		LeaseMinTTL:            5 * time.Second,
		ProgressNotifyInterval: 10 * time.Minute,
		WatchQueueEvents:       4096,
		WatchQueueBytes:        8 << 20,
		WatchStreamQueueBytes:  32 << 20,
		Version:                EtcdVersion,
		MemberName:             "default",
	}
}

// Server implements the etcd v3 services over an fsm.Store and a Raft.
type Server struct {
	pb.UnimplementedKVServer
	pb.UnimplementedWatchServer
	pb.UnimplementedLeaseServer
	pb.UnimplementedMaintenanceServer
	pb.UnimplementedClusterServer

	cfg    Config
	store  *fsm.Store
	raft   Raft
	log    *slog.Logger
	lessor *lessor
	leader leaderConn

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// watchers counts the watches open on every stream (for metrics).
	watchers atomic.Int64
	// watchCounters accounts for what every stream has queued.
	watchCounters watchCounters
	// fenceGate caches the feature gate's answer for fenced writes.
	fenceGate fenceGate
}

// Watchers is the number of watches open on this server.
func (s *Server) Watchers() int64 { return s.watchers.Load() }

// WatchQueue reports what watch streams have queued and not yet written,
// how many watchers wait at their cap, and how many were canceled as
// compacted.
func (s *Server) WatchQueue() WatchQueueStats { return s.watchCounters.snapshot() }

// WatchLimits reports the watch queue caps in force: per watch (events,
// bytes) and per stream (bytes).
func (s *Server) WatchLimits() (watchEvents, watchBytes, streamBytes int64) {
	return s.cfg.WatchQueueEvents, s.cfg.WatchQueueBytes, s.cfg.WatchStreamQueueBytes
}

// HistoryLimit is the size past which the leader compacts history (0: none).
func (s *Server) HistoryLimit() int64 { return s.cfg.HistoryBytes }

func (s *Server) watchLimits() watchLimits {
	return watchLimits{
		watchEvents: s.cfg.WatchQueueEvents,
		watchBytes:  s.cfg.WatchQueueBytes,
		streamBytes: s.cfg.WatchStreamQueueBytes,
	}
}

// New returns a server. Its leader duties (RunLessor, RunCompactor) run in
// each term the caller's raft node leads: core/server starts them, Start
// runs them for a standalone Server.
func New(cfg Config, store *fsm.Store, r Raft) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	def := DefaultConfig()
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = def.MaxRequestBytes
	}
	if cfg.MaxTxnOps == 0 {
		cfg.MaxTxnOps = def.MaxTxnOps
	}
	if cfg.LeaseMinTTL == 0 {
		cfg.LeaseMinTTL = def.LeaseMinTTL
	}
	if cfg.ProgressNotifyInterval == 0 {
		cfg.ProgressNotifyInterval = def.ProgressNotifyInterval
	}
	if cfg.Version == "" {
		cfg.Version = def.Version
	}
	if cfg.WatchQueueEvents <= 0 {
		cfg.WatchQueueEvents = def.WatchQueueEvents
	}
	if cfg.WatchQueueBytes <= 0 {
		cfg.WatchQueueBytes = def.WatchQueueBytes
	}
	if cfg.WatchStreamQueueBytes <= 0 {
		cfg.WatchStreamQueueBytes = def.WatchStreamQueueBytes
	}
	s := &Server{cfg: cfg, store: store, raft: r, log: cfg.Logger.With("component", "kvserver")}
	s.lessor = newLessor(s)
	s.leader.raft = r
	return s
}

// Start runs the leader duties (RunLessor, RunCompactor) itself, in each
// term the raft node leads, until Stop: for a Server used on its own (tests,
// tools) over a raft that offers Subscribe. core/server does not call it: it
// lists these duties with its others in leader.go.
func (s *Server) Start() {
	sub, ok := s.raft.(interface {
		Subscribe() (<-chan raftnode.LeadershipEvent, func())
	})
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	events, unsubscribe := sub.Subscribe()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer unsubscribe()
		_ = raftnode.FollowLeadership(ctx, events, func(ctx context.Context, term uint64) {
			done := make(chan struct{})
			go func() { defer close(done); s.RunCompactor(ctx, term) }()
			s.RunLessor(ctx, term)
			<-done
		})
	}()
}

// Stop ends the background loops and waits for them.
func (s *Server) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.leader.close()
}

// NewGRPCServer returns a gRPC server with every etcd service registered,
// sized like etcd's (request limit plus gRPC overhead, unbounded responses).
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + 512*1024),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}, opts...)
	g := grpc.NewServer(opts...)
	s.Register(g)
	return g
}

// Register adds the etcd services to g.
func (s *Server) Register(g *grpc.Server) {
	pb.RegisterKVServer(g, s)
	pb.RegisterWatchServer(g, s)
	pb.RegisterLeaseServer(g, s)
	pb.RegisterMaintenanceServer(g, s)
	pb.RegisterClusterServer(g, s)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
}

// Serve serves g on l until it is stopped; a closed listener is not an error.
func Serve(g *grpc.Server, l net.Listener) error {
	if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("serving etcd API on %s: %w", l.Addr(), err)
	}
	return nil
}

func (s *Server) header(rev int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{
		ClusterId: s.cfg.ClusterID,
		MemberId:  s.cfg.MemberID,
		Revision:  rev,
		RaftTerm:  s.raft.Term(),
	}
}

// propose runs one command through raft and returns the fsm's result.
func (s *Server) propose(ctx context.Context, typ byte, msg proto.Message) (fsm.Result, error) {
	if s.cfg.CommandGate != nil {
		if err := s.cfg.CommandGate(typ); err != nil {
			return fsm.Result{}, status.Error(codes.FailedPrecondition, err.Error())
		}
	}
	cmd, err := fsm.Encode(typ, msg)
	if err != nil {
		return fsm.Result{}, fmt.Errorf("encoding command type %d: %w", typ, err)
	}
	if typ == fsm.CmdTxn {
		if cmd, err = s.fence(ctx, cmd); err != nil {
			return fsm.Result{}, err
		}
	}
	if len(cmd) > s.cfg.MaxRequestBytes {
		return fsm.Result{}, rpctypes.ErrGRPCRequestTooLarge
	}
	out, _, err := s.raft.Apply(ctx, cmd)
	if err != nil {
		return fsm.Result{}, toGRPCError(err)
	}
	res, ok := out.(fsm.Result)
	if !ok {
		return fsm.Result{}, fmt.Errorf("state machine returned %T, want fsm.Result", out)
	}
	if res.Err != nil {
		return res, toGRPCError(res.Err)
	}
	return res, nil
}

// readView returns a view that reflects every write acknowledged before the
// call (linearizable), or the local view when serializable.
func (s *Server) readView(ctx context.Context, serializable bool) (*fsm.View, error) {
	if !serializable {
		if _, err := s.raft.LinearizableRead(ctx); err != nil {
			return nil, toGRPCError(err)
		}
	}
	return s.store.View(), nil
}

// toGRPCError maps store and consensus errors to the errors etcd returns, so
// clients (kube-apiserver's etcd3 storage, etcdctl) react as they do to etcd.
func toGRPCError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fsm.ErrCompacted):
		return rpctypes.ErrGRPCCompacted
	case errors.Is(err, fsm.ErrFutureRev):
		return rpctypes.ErrGRPCFutureRev
	case errors.Is(err, fsm.ErrLeaseNotFound):
		return rpctypes.ErrGRPCLeaseNotFound
	case errors.Is(err, fsm.ErrLeaseExists):
		return rpctypes.ErrGRPCLeaseExist
	case errors.Is(err, fsm.ErrDuplicateKey):
		return rpctypes.ErrGRPCDuplicateKey
	case errors.Is(err, fsm.ErrKeyNotFound):
		return rpctypes.ErrGRPCKeyNotFound
	case errors.Is(err, fsm.ErrNoSpace):
		return rpctypes.ErrGRPCNoSpace
	case errors.Is(err, fsm.ErrFenced):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, raftnode.ErrUnknownOutcome):
		// The entry may still commit: etcd's "timed out, possibly due to
		// previous leader failure" tells clients the outcome is unknown.
		return rpctypes.ErrGRPCTimeoutDueToLeaderFail
	case errors.Is(err, raftnode.ErrNotLeader):
		return rpctypes.ErrGRPCNoLeader
	case errors.Is(err, raftnode.ErrShutdown):
		return rpctypes.ErrGRPCStopped
	case errors.Is(err, raftnode.ErrHalted):
		// This server cannot apply the log (a newer version wrote it): it
		// must not answer from a state the others have left behind.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	}
	return err
}
