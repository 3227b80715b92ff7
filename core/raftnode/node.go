package raftnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/keelson/keelson/internal/hclogbridge"
)

const (
	logCacheSize      = 512
	snapshotsRetained = 2
	transportPool     = 3
	transportTimeout  = 10 * time.Second
	// transportInFlight is how many AppendEntries a leader may have in
	// flight to one follower: 1 turns hashicorp/raft's pipelined
	// replication off. In v1.7.3 the pipeline can wedge for good once a
	// follower answers one request with failure (its log store refused the
	// entries: a full or failing disk) or the connection breaks: the
	// decoder stops reading responses, and if the send loop picks another
	// trigger before it notices, the next send blocks forever on the
	// decoder's unbuffered hand-off (hashicorp/raft#612). Heartbeats go on
	// from their own goroutine, so the follower never calls an election
	// and never receives another entry. Without pipelining each follower
	// gets one request at a time carrying every entry appended meanwhile,
	// which raft's authors measured as no slower (hashicorp/raft#541).
	transportInFlight = 1
	// notifyBuffer decouples raft from our observer goroutine; raft blocks
	// on NotifyCh, so it must never fill while we are busy.
	notifyBuffer = 64
)

// Node is one raft server plus the bookkeeping the store needs on top of it:
// the FSM-applied index, the per-term barrier that gates linearizable reads,
// and fan-out of leadership changes.
type Node struct {
	cfg       Config
	log       *slog.Logger
	raft      *raft.Raft
	fsm       *fsmAdapter
	transport *commitClamp
	// bolt is raft.db, the stable store (and the log with LogStoreBoltDB);
	// wal is the log with LogStoreWAL; logs is the log behind raft's cache.
	bolt *raftboltdb.BoltStore
	wal  *walLog
	logs raft.LogStore

	// mux owns the raft port; rpc answers other servers' forwarded writes
	// and reads on it, rpcc forwards this server's to the leader.
	mux  *mux
	rpc  *rpcServer
	rpcc *rpcClient
	// nudge limits the barriers the leader appends for forwarded writes.
	nudge nudge
	// confirm coalesces the leader's confirmations for reads (confirm.go).
	confirm confirmer

	notifyCh chan bool
	stop     chan struct{}
	// stopCtx is cancelled (cause ErrShutdown) when stop is closed, for
	// code that takes a context.
	stopCtx    context.Context
	stopCancel context.CancelCauseFunc
	wg         sync.WaitGroup

	// extensions is recorded with every entry this node appends (its
	// Config.Version).
	extensions []byte

	shutdownOnce sync.Once
	shutdownErr  error

	leadership leadership

	// multiplier scales the heartbeat and election timeouts while this
	// server is starved of CPU (health.go).
	multiplier timeoutMultiplier
}

// New opens (or creates) the raft state in cfg.DataDir, starts the transport
// and the raft server, and bootstraps a single-server cluster when
// cfg.Bootstrap is set and there is no existing state. On a restart the FSM
// is restored from the newest snapshot before New returns; log entries after
// it are replayed in the background as raft learns the commit index.
func New(cfg Config, sm StateMachine) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if sm == nil {
		return nil, errors.New("raftnode: nil StateMachine")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "raftnode", "node_id", cfg.NodeID),
		fsm:      newFSMAdapter(sm, cfg.Version),
		notifyCh: make(chan bool, notifyBuffer),
		stop:     make(chan struct{}),
		rpcc:     &rpcClient{tls: cfg.TLS, idle: map[string][]*rpcConn{}},
	}
	if cfg.Version != "" {
		n.extensions = []byte(cfg.Version)
	}
	n.stopCtx, n.stopCancel = context.WithCancelCause(context.Background())
	n.leadership.init()
	if err := n.open(); err != nil {
		n.stopCancel(ErrShutdown)
		n.closeStores()
		return nil, err
	}
	n.wg.Add(1)
	go n.observeLeadership()
	if cfg.MaxTimeoutMultiplier > 1 {
		n.wg.Add(1)
		go n.watchHealth()
	}
	return n, nil
}

func (n *Node) open() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("raftnode: create DataDir %q: %w", cfg.DataDir, err)
	}
	hl := hclogbridge.New(cfg.Logger, "raft")
	if err := n.openStores(hl); err != nil {
		return err
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hl.Named("snapshot"))
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot store in %q: %w", cfg.DataDir, err)
	}
	snaps := &indexTrackingStore{SnapshotStore: fileSnaps, fsm: n.fsm}

	m, err := newMux(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS, n.log, defaultMuxLimits())
	if err != nil {
		return err
	}
	n.mux = m
	n.transport = newCommitClamp(raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: m.listener(connRaft), tls: cfg.TLS},
		MaxPool: transportPool,
		Timeout: transportTimeout,
		// See transportInFlight.
		MaxRPCsInFlight: transportInFlight,
		Logger:          hl.Named("transport"),
	}))

	rc := n.raftConfig(hl)
	if err := raft.ValidateConfig(rc); err != nil {
		return fmt.Errorf("raftnode: raft config for node %q: %w", cfg.NodeID, err)
	}
	hasState, err := raft.HasExistingState(n.logs, n.bolt, snaps)
	if err != nil {
		return fmt.Errorf("raftnode: inspect existing state in %q: %w", cfg.DataDir, err)
	}
	r, err := raft.NewRaft(rc, n.fsm, n.logs, n.bolt, snaps, n.transport)
	if err != nil {
		return fmt.Errorf("raftnode: start raft in %q: %w", cfg.DataDir, err)
	}
	n.raft = r
	if cfg.Bootstrap && !hasState {
		self := raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(cfg.NodeID),
			Address:  n.transport.LocalAddr(),
		}
		if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{self}}).Error(); err != nil {
			return fmt.Errorf("raftnode: bootstrap node %q at %s: %w", cfg.NodeID, self.Address, err)
		}
		n.log.Info("bootstrapped single-server cluster", "addr", self.Address)
	}
	n.rpc = &rpcServer{n: n, ln: m.listener(connRPC), conns: map[net.Conn]struct{}{}}
	n.wg.Add(1)
	go n.rpc.serve()
	n.log.Info("raft started", "addr", n.transport.LocalAddr(), "existing_state", hasState,
		"applied_index", n.fsm.appliedIndex())
	return nil
}

func (n *Node) raftConfig(hl hclog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.NodeID)
	rc.HeartbeatTimeout = n.cfg.HeartbeatTimeout
	rc.ElectionTimeout = n.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = n.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = n.cfg.CommitTimeout
	rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	rc.SnapshotInterval = n.cfg.SnapshotInterval
	rc.TrailingLogs = n.cfg.TrailingLogs
	// Batch concurrent proposals into one log write (one fsync) on the
	// leader: with many clients this, not the state machine, is the limit.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	rc.NotifyCh = n.notifyCh
	rc.Logger = hl
	rc.NoLegacyTelemetry = true
	return rc
}

// closeStores releases whatever open managed to create; used when New fails
// half-way and by Shutdown.
func (n *Node) closeStores() error {
	var errs []error
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft shutdown: %w", err))
		}
	}
	if n.transport != nil {
		if err := n.transport.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
	}
	if n.mux != nil {
		// Already closed with the transport unless open failed before it.
		_ = n.mux.Close()
	}
	if n.rpc != nil {
		n.rpc.close()
	}
	n.rpcc.close()
	if n.wal != nil {
		if err := n.wal.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close log WAL: %w", err))
		}
	}
	if n.bolt != nil {
		if err := n.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft.db: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Shutdown stops raft, the transport and the background goroutines and
// closes the stores. In-flight Apply calls return ErrUnknownOutcome.
// Subscriber channels are closed. It is safe to call more than once.
func (n *Node) Shutdown() error {
	n.shutdownOnce.Do(func() {
		close(n.stop)
		n.stopCancel(ErrShutdown)
		n.shutdownErr = n.closeStores()
		n.wg.Wait()
		n.leadership.closeAll()
		if n.shutdownErr != nil {
			n.shutdownErr = fmt.Errorf("raftnode: shutdown node %q: %w", n.cfg.NodeID, n.shutdownErr)
		}
		n.log.Info("raft stopped")
	})
	return n.shutdownErr
}

func (n *Node) stopped() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// futureErr waits for a raft future without tying the caller to it: raft
// drops futures queued for the FSM at shutdown without answering them, so
// callers select on the returned channel together with ctx and n.stop.
func futureErr(f raft.Future) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	return ch
}

// Apply proposes cmd and returns the state machine's result and the log
// index once the entry is committed and applied locally. It can be called on
// any server: a follower forwards cmd to the leader (waiting up to
// LeaderWaitTimeout for one to be known), then waits until its own state
// machine has applied the entry and returns its own result, which is the
// leader's, the state machine being deterministic. Errors:
//   - ErrNoLeader (also ErrNotLeader): no leader within LeaderWaitTimeout or
//     ctx; not proposed; safe to retry.
//   - ErrNotApplied: raft did not accept the command in time (enqueue
//     timeout, or ctx ended before enqueue); not proposed; safe to retry.
//   - ErrUnknownOutcome: the command was sent to or enqueued by the leader
//     but leadership was lost or is being transferred, the connection to
//     the leader failed, ctx ended, or a node shut down before the result
//     arrived. The entry may still commit; never report it as failed. When
//     the leader did commit it at a known index but this server could not
//     produce the result (ctx ended before the local apply, or a snapshot
//     install skipped the entry), that index is returned too.
//   - ErrShutdown: the node was shut down before the call; not proposed.
func (n *Node) Apply(ctx context.Context, cmd []byte) (any, uint64, error) {
	if n.stopped() {
		return nil, 0, ErrShutdown
	}
	if err := n.fsm.haltError(); err != nil {
		return nil, 0, err
	}
	// On the leader, propose at once: onLeader's leader wait, retry timer
	// and shutdown-bound context cost three allocations and a lock shared
	// by every concurrent writer, and applyLocal watches ctx and shutdown
	// itself. Only a leader that stepped down before proposing goes on to
	// look for the new one.
	if n.raft.State() == raft.Leader {
		res, index, err := n.applyLocal(ctx, cmd)
		if !errors.Is(err, ErrNotLeader) {
			return res, index, err
		}
	}
	var (
		res   any
		index uint64
	)
	err := n.onLeader(ctx, func(ctx context.Context, addr string) (retry bool, err error) {
		if addr == "" {
			res, index, err = n.applyLocal(ctx, cmd)
			// Not leader any more, and nothing was proposed.
			return errors.Is(err, ErrNotLeader), err
		}
		res, index, retry, err = n.forwardApply(ctx, addr, cmd)
		return retry, err
	})
	return res, index, err
}

// applyLocal is Apply on the leader.
func (n *Node) applyLocal(ctx context.Context, cmd []byte) (any, uint64, error) {
	if n.raft.State() != raft.Leader {
		return nil, 0, n.notLeader()
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		return nil, 0, fmt.Errorf("%w: context ended before proposing: %w", ErrNotApplied, context.Cause(ctx))
	}
	// The entry records who wrote it, so a server too old to apply it can
	// say which version it needs.
	f := n.raft.ApplyLog(raft.Log{Data: cmd, Extensions: n.extensions}, timeout)
	select {
	case err := <-futureErr(f):
		if err != nil {
			return nil, 0, mapApplyError(err, true, n.notLeader)
		}
		if herr, ok := f.Response().(*HaltError); ok {
			return nil, f.Index(), herr
		}
		return f.Response(), f.Index(), nil
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, context.Cause(ctx))
	case <-n.stop:
		return nil, 0, fmt.Errorf("%w: %w", ErrUnknownOutcome, ErrShutdown)
	}
}

// AppliedIndex is the last index the state machine has applied (or restored
// from a snapshot).
func (n *Node) AppliedIndex() uint64 { return n.fsm.appliedIndex() }

// Halted is closed when the state machine refused a committed entry; the
// node then applies nothing more and Apply, LinearizableRead and
// WaitApplied fail with a HaltError (see HaltErr). Restarting the process
// with software that can apply the entry resumes from the log.
func (n *Node) Halted() <-chan struct{} { return n.fsm.halted }

// HaltErr is why the node halted (a *HaltError), or nil.
func (n *Node) HaltErr() error { return n.fsm.haltError() }

// IsLeader reports whether this node currently believes it is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the current leader's transport address and ID, empty if
// unknown.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// Term is the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Addr is the transport address peers use to reach this node.
func (n *Node) Addr() string { return string(n.transport.LocalAddr()) }

// ID is this node's raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// PeerListener yields the connections other servers open with DialPeer: a
// service of the caller's (kvserver's etcd API, for lease keep-alives) on the
// raft port, behind the same mutual TLS as raft. Closing it stops only it.
// Call it at most once.
func (n *Node) PeerListener() net.Listener {
	return &peerListener{m: n.mux, ch: n.mux.peer, done: make(chan struct{})}
}

// AdminListener yields the connections other servers open with DialAdmin:
// the operator service (core/ops), so an operator command run on any server
// reaches the leader. It sits behind the same mutual TLS as raft. Call it at
// most once.
func (n *Node) AdminListener() net.Listener {
	return &peerListener{m: n.mux, ch: n.mux.admin, done: make(chan struct{})}
}

// DialAdmin connects to the AdminListener of the server whose raft address
// is address.
func (n *Node) DialAdmin(ctx context.Context, address string) (net.Conn, error) {
	return dialKind(ctx, address, n.cfg.TLS, connAdmin)
}

// DialPeer connects to the PeerListener of the server whose raft address is
// address.
func (n *Node) DialPeer(ctx context.Context, address string) (net.Conn, error) {
	return dialKind(ctx, address, n.cfg.TLS, connPeer)
}

// Stats returns raft's stats plus fsm_applied_index and
// timeout_multiplier (what this server's heartbeat and election timeouts
// are scaled by while it follows, for its own scheduling delay; health.go).
func (n *Node) Stats() map[string]string {
	s := n.raft.Stats()
	s["fsm_applied_index"] = strconv.FormatUint(n.fsm.appliedIndex(), 10)
	s["timeout_multiplier"] = strconv.Itoa(n.TimeoutMultiplier())
	return s
}

// TimeoutMultiplier is what this server's heartbeat and election timeouts
// are scaled by while it follows or campaigns (1: not scaled; health.go).
func (n *Node) TimeoutMultiplier() int { return n.multiplier.get() }

// Raft is the escape hatch for operator commands (peers, snapshot restore).
func (n *Node) Raft() *raft.Raft { return n.raft }

// AddVoter adds (or re-addresses) a voting server. Only the leader can.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout)
	return n.waitConfigChange(ctx, f, "add voter "+id+" at "+addr)
}

// RemoveServer removes a server from the configuration. Only the leader can.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	f := n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout)
	return n.waitConfigChange(ctx, f, "remove server "+id)
}

func (n *Node) waitConfigChange(ctx context.Context, f raft.Future, what string) error {
	select {
	case err := <-futureErr(f):
		if err != nil {
			return fmt.Errorf("raftnode: %s: %w", what, mapApplyError(err, true, n.notLeader))
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("raftnode: %s: %w: %w", what, ErrUnknownOutcome, context.Cause(ctx))
	case <-n.stop:
		return fmt.Errorf("raftnode: %s: %w: %w", what, ErrUnknownOutcome, ErrShutdown)
	}
}

// DialAdminTLS connects to the AdminListener at address with the given TLS
// configuration: what DialAdmin does with the node's own, for a client that
// is not a node (a test showing which credentials the port refuses).
func DialAdminTLS(ctx context.Context, address string, tlsCfg *tls.Config) (net.Conn, error) {
	return dialKind(ctx, address, tlsCfg, connAdmin)
}
