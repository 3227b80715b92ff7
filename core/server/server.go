// Package server assembles a Keelson control node from its parts: the
// state machine, raft, the etcd API in front of them and, unless disabled,
// the embedded kube-apiserver.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/core/raftnode"
	"github.com/keelson/keelson/fsm"
	"github.com/keelson/keelson/internal/dirlock"
	"github.com/keelson/keelson/internal/serfpool"
	"github.com/keelson/keelson/plugins/host"
	"google.golang.org/grpc"
	rbacv1 "k8s.io/api/rbac/v1"
)

// Options carry what the binary knows and the configuration does not.
type Options struct {
	// BuiltinPlugins names the plugins compiled into the binary; the leader
	// runs each (unless disabled) as `keelson plugin NAME`.
	BuiltinPlugins []string
	// BuiltinNodePlugins names the built-in node plugins: every agent runs
	// each (unless disabled, on the Nodes plugins.nodeSelector selects) as
	// `keelson plugin NAME`; the leader only publishes their declarations.
	BuiltinNodePlugins []string
	// ServedByKeelson are the built-ins the embedded keelson-plugins
	// executable does not serve: they run as `keelson plugin NAME`.
	ServedByKeelson []string
	// Version is the keelson version, recorded with every raft entry this
	// server appends as leader and advertised to the other servers.
	Version string
	// NodeRules are the API permissions every node agent needs beyond what
	// the Node authorizer grants (its service network reads every Service,
	// EndpointSlice, NetworkPolicy and pod): the leader keeps them in the
	// ClusterRole keelson:node, bound to the group system:nodes.
	NodeRules []rbacv1.PolicyRule
	// LeafCertLifetime overrides how long this server's own certificates
	// (API serving, peer, admin, kubelet and front-proxy client) are valid;
	// zero is pki.LeafLifetime. Tests shorten it to watch renewals happen.
	LeafCertLifetime time.Duration
	// CACertLifetime overrides how long a CA this server creates is valid;
	// zero is pki.CALifetime. Tests shorten it to see expiry warnings.
	CACertLifetime time.Duration
	// OnJoinToken, when set, receives the full server token once the
	// server has its identity (the server's own agent joins with it).
	OnJoinToken func(token string)
}

// Server is a running control node.
type Server struct {
	cfg    config.Server
	opts   Options
	log    *slog.Logger
	bundle *pki.Bundle
	// peerTLS is the raft port's mutual TLS; the voter reconciler proves
	// a server's identity with it before making it a voter.
	peerTLS *tls.Config
	// pkiOpts are the options the bundle was ensured with; renewals reuse them.
	pkiOpts pki.Options
	secret  string
	// agentSecret is --agent-token's secret, for a cluster that has none.
	agentSecret string
	store       *fsm.Store
	raft        *raftnode.Node
	kv          *kvserver.Server
	grpc        *grpc.Server
	pool        *serfpool.Pool
	// pluginSockets is where the plugins' go-plugin sockets live
	// (host.PrepareSocketDir), emptied at every start.
	pluginSockets string
	// pluginStore holds the executables of installed plugins
	// (DATA_DIR/plugin-store), served to the other servers.
	pluginStore *pluginstore.Store
}

// Run starts a control node and blocks until ctx is canceled, then shuts it
// down in order. It returns the first fatal error of any component.
func Run(ctx context.Context, cfg config.Server, log *slog.Logger, opts Options) error {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	applyGCPercent(cfg.GOGC, log)
	if err := cfg.Plugins.ValidatePlugins(append(slices.Clone(opts.BuiltinPlugins), opts.BuiltinNodePlugins...)); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	lock, err := dirlock.Acquire(cfg.DataDir, "--data-dir")
	if err != nil {
		return err
	}
	defer lock.Release()
	s, err := open(ctx, cfg, log, opts)
	if err != nil {
		return err
	}
	defer s.close()

	// Only failures are reported: a component that returns nil has simply
	// nothing (more) to do, which must not stop the server.
	errc := make(chan error, 8)
	run := func(f func() error) {
		go func() {
			if err := f(); err != nil {
				errc <- err
			}
		}()
	}
	run(func() error { return s.serveSupervisor(ctx) })
	run(func() error { return s.serveAdmin(ctx) })
	run(func() error { return s.serveDebug(ctx) })
	run(func() error { return s.renewCertificates(ctx) })
	if err := s.serveEtcdAPI(run); err != nil {
		return err
	}
	run(func() error { return s.watchHalt(ctx) })
	run(func() error { return s.watchGossip(ctx) })
	if err := s.waitForLeader(ctx, errc); err != nil {
		return err
	}
	log.Info("store ready", "elapsed", time.Since(start).Round(time.Millisecond), "raft_address", s.raft.Addr())

	// The API server stops before the store it depends on: cancel it and
	// wait for it to return before the deferred close shuts raft down.
	var apiDone chan error // nil (never ready) without an API server
	// Leader duties (plugins first among them) stop first, while the API
	// server they talk to still serves.
	leaderCtx, stopLeader := context.WithCancel(ctx)
	defer stopLeader()
	leaderDone := make(chan struct{})
	var apiReady chan struct{} // nil: no API server
	if !cfg.DisableAPIServer {
		apiDone = make(chan error, 1)
		apiReady = make(chan struct{})
		go func() { apiDone <- s.runAPIServer(ctx, start, apiReady) }()
		run(func() error { return s.serveStoreMetrics(ctx) })
		run(func() error { return s.ensureAgentToken(ctx, apiReady) })
	}
	run(func() error {
		defer close(leaderDone)
		return s.runLeaderDuties(leaderCtx, apiReady)
	})
	apiRunning := apiDone != nil
	err = nil
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-errc:
	case err = <-apiDone:
		apiRunning = false
		if err == nil { // it ended cleanly: keep the store up
			select {
			case <-ctx.Done():
			case err = <-errc:
			}
		}
	}
	stopLeader()
	waitLeaderDuties(log, leaderDone)
	cancel()
	if apiRunning {
		err = waitAPIServer(log, apiDone, err)
	}
	return err
}

// serveEtcdAPI serves the etcd API on every listener, through run.
func (s *Server) serveEtcdAPI(run func(func() error)) error {
	listeners, err := s.listen()
	if err != nil {
		return err
	}
	for _, l := range listeners {
		run(func() error { return kvserver.Serve(s.grpc, l) })
		s.log.Info("serving etcd API", "address", l.Addr().String())
	}
	return nil
}

// waitLeaderDuties waits, bounded, for the leader duties to stop.
func waitLeaderDuties(log *slog.Logger, done <-chan struct{}) {
	select {
	case <-done:
	case <-time.After(pluginsStopTimeout):
		log.Warn("leader duties (plugins) did not stop in time; the kernel ends them with this process", "waited", pluginsStopTimeout)
	}
}

// waitAPIServer waits, bounded, for the cancelled API server to return; its
// error is the server's if err is nil.
func waitAPIServer(log *slog.Logger, apiDone <-chan error, err error) error {
	select {
	case apiErr := <-apiDone:
		if err == nil {
			err = apiErr
		}
	case <-time.After(apiServerStopTimeout):
		log.Warn("kube-apiserver did not stop in time; stopping the store under it", "waited", apiServerStopTimeout)
	}
	return err
}

// pluginsStopTimeout bounds how long shutdown waits for the plugins to stop
// gracefully (they get host.Config.StopGrace each, in parallel).
const pluginsStopTimeout = 20 * time.Second

// apiServerStopTimeout bounds how long shutdown waits for kube-apiserver
// before stopping the store anyway, so SIGTERM always ends the process.
const apiServerStopTimeout = 30 * time.Second

func open(ctx context.Context, cfg config.Server, log *slog.Logger, opts Options) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir (--data-dir) %s: %w", cfg.DataDir, err)
	}
	if err := checkNodeName(cfg.DataDir, cfg.NodeName); err != nil {
		return nil, err
	}
	agentSecret, err := agentTokenSecret(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, opts: opts, log: log, store: fsm.New(), agentSecret: agentSecret}
	if s.pluginSockets, err = host.PrepareSocketDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.pluginStore, err = pluginstore.New(config.PluginStoreDir(cfg.DataDir), pluginstore.Options{}); err != nil {
		return nil, err
	}
	id, err := s.ensureIdentity(ctx)
	if err != nil {
		return nil, err
	}
	peerTLS, err := s.bundle.PeerTLS()
	if err != nil {
		return nil, err
	}
	s.peerTLS = peerTLS

	rc := raftnode.DefaultConfig()
	rc.NodeID = cfg.NodeName
	rc.DataDir = filepath.Join(cfg.DataDir, "raft")
	rc.BindAddr = cfg.RaftAddr()
	rc.AdvertiseAddr = cfg.RaftAdvertise()
	if strings.HasSuffix(rc.BindAddr, ":0") {
		rc.AdvertiseAddr = "" // a test picked a free port: advertise what was bound
	}
	// A lone server bootstraps itself; with --join or --bootstrap-expect the
	// membership pool decides (see startMembership).
	rc.Bootstrap = cfg.BootstrapExpect <= 1 && len(cfg.Join) == 0
	rc.TLS = peerTLS
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout.Duration
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout.Duration
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout.Duration
	rc.MaxTimeoutMultiplier = cfg.Raft.MaxTimeoutMultiplier
	rc.SnapshotThreshold = cfg.Raft.SnapshotThreshold
	rc.SnapshotInterval = cfg.Raft.SnapshotInterval.Duration
	rc.TrailingLogs = cfg.Raft.TrailingLogs
	rc.ApplyTimeout = cfg.Raft.ApplyTimeout.Duration
	rc.LogStore = cfg.Raft.LogStore
	rc.Logger = log
	rc.Version = "keelson " + opts.Version
	node, err := raftnode.New(rc, kvserver.Machine{Store: s.store, Log: log})
	if err != nil {
		return nil, fmt.Errorf("starting raft on %s: %w", rc.BindAddr, err)
	}
	s.raft = node

	kc := kvserver.DefaultConfig()
	kc.ClusterID = id.clusterID
	kc.MemberID = kvserver.MemberID(cfg.NodeName)
	kc.MemberName = cfg.NodeName
	kc.MaxRequestBytes = cfg.Store.MaxRequestBytes
	kc.MaxTxnOps = cfg.Store.MaxTxnOps
	kc.HistoryRevisions = cfg.Store.HistoryRevisions
	kc.HistoryBytes = cfg.Store.HistoryBytes
	kc.LeaseMinTTL = cfg.Store.LeaseMinTTL.Duration
	kc.QuotaBytes = cfg.Store.QuotaBytes
	kc.CommandGate = s.commandGate
	kc.Logger = log
	kc.Members = s.etcdMembers
	if cfg.EtcdListen != "" {
		scheme := "http://"
		if cfg.EtcdClientCA != "" {
			scheme = "https://"
		}
		kc.ClientURLs = []string{scheme + cfg.EtcdListen}
	}
	s.kv = kvserver.New(kc, s.store, node)
	s.grpc = s.kv.NewGRPCServer()

	if err := s.startMembership(ctx, id.secret); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// listen opens the unix socket (always; kube-apiserver uses it) and the
// optional TCP listener for operators.
func (s *Server) listen() ([]net.Listener, error) {
	sock := s.cfg.EtcdSocket()
	if err := removeStaleSocket(sock); err != nil {
		return nil, err
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		return nil, fmt.Errorf("listening on etcd socket %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		ul.Close()
		return nil, fmt.Errorf("restricting etcd socket %s: %w", sock, err)
	}
	// The raft port's peer service: other servers reach the leader's etcd API
	// here for lease keep-alives, behind raft's mutual TLS.
	ls := []net.Listener{ul, s.raft.PeerListener()}
	if s.cfg.EtcdListen != "" {
		tl, err := s.etcdListener()
		if err != nil {
			ul.Close()
			return nil, err
		}
		ls = append(ls, tl)
	}
	return ls, nil
}

// removeStaleSocket removes a socket file left by a crashed process, but
// refuses to steal one that a live server still answers on.
func removeStaleSocket(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another keelson server is running on this data dir (%s answers); stop it first", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}

// waitForLeader returns once a linearizable read succeeds: this server is in
// a cluster with a leader and has caught up. A joining server may wait here
// until the leader adds it; it says so every half minute. A component's
// fatal error on errc (a node name conflict) ends the wait.
func (s *Server) waitForLeader(ctx context.Context, errc <-chan error) error {
	next := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.raft.LinearizableRead(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, raftnode.ErrHalted) {
			return fmt.Errorf("the store cannot start: %w", err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for a raft leader: %w", ctx.Err())
		}
		if time.Now().After(next) {
			s.log.Warn("still waiting for a raft leader", "err", err, "raft_address", s.raft.Addr(),
				"check", "a joining server waits until the leader reaches it: check that the other servers can reach this raft address (--advertise-address and the raft port) and that --bootstrap-expect servers run; `keelson raft peers` on a server of the cluster shows whom it lists")
			next = time.Now().Add(30 * time.Second)
		}
		select {
		case <-ctx.Done():
		case err := <-errc:
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watchGossip ends the server when its gossip membership cannot go on: its
// join found another live member with its node name.
func (s *Server) watchGossip(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.pool.Fatal():
		s.log.Error("stopping: the gossip pool refused this server", "err", err)
		return err
	}
}

// watchHalt ends the server when the state machine stops applying (a
// raft entry this version does not know): a server that cannot apply the
// log must not go on serving a state the others have left behind. The
// error names the entry and the version that wrote it.
func (s *Server) watchHalt(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.raft.Halted():
		err := s.raft.HaltErr()
		s.log.Error("the store stopped applying the raft log; shutting down", "err", err)
		return err
	}
}

func (s *Server) close() {
	s.leave()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	s.kv.Stop()
	if err := s.raft.Shutdown(); err != nil {
		s.log.Error("raft shutdown", "err", err)
	}
	if err := host.RemoveRunDirs(s.cfg.DataDir); err != nil {
		s.log.Warn("removing the plugins' socket and executable directories", "err", err)
	}
}
