// Package gossip makes a node agent a member of the cluster's gossip pool,
// the serf pool the servers share (core/membership). Being a member is the
// node's heartbeat: the raft leader sees it alive through gossip, at no raft
// write, and sets the Node's Ready condition to Unknown only after the
// member has been unreachable for the grace period. A node in the pool need
// not renew its Lease in kube-node-lease (see nodehealth.LivenessAnnotation in plugins/sdk/nodehealth).
//
// The agent calls Join once at start and Leave when it is decommissioned
// (a plain stop is Close: the node then looks failed, as a crashed node
// does, and its Node goes Unknown after the grace period).
package gossip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/keelson/keelson/internal/serfpool"
)

// DefaultRejoinInterval is how often a member that sees no alive server
// tries to join again.
const DefaultRejoinInterval = 10 * time.Second

// Config says who the node is and where the servers are.
type Config struct {
	// NodeName is the name of the node's Node object; it is also the
	// member's name in the pool, which is how the leader matches the two.
	NodeName string
	// Zone is the node's failure zone (topology.kubernetes.io/zone);
	// optional.
	Zone string
	// KubeletAddr is the host:port of the node's kubelet API, published to
	// the pool; optional.
	KubeletAddr string
	// GossipKey is the pool's 32-byte encryption key, which a server sends
	// the node with its credentials (see join.NodeCredentials).
	GossipKey []byte
	// Servers lists host[:port] gossip addresses of servers (port 7946 when
	// missing). One answering server is enough; the member then learns
	// every server from the pool.
	Servers []string
	// BindAddr is the host:port the member gossips on; default
	// "0.0.0.0:7946". Port 0 picks a free one.
	BindAddr string
	// AdvertiseAddr is the host:port other members reach this one at, when
	// it differs from BindAddr.
	AdvertiseAddr string
	// DataDir, when set, keeps serf's snapshot so a restarted agent rejoins
	// the servers it knew even if Servers has changed.
	DataDir string
	// Logger receives the member's logs; default slog.Default().
	Logger *slog.Logger
	// RejoinInterval is how often the member, seeing no alive server, joins
	// again through every server address it has known; default 10s.
	RejoinInterval time.Duration
	// Proof, when set, returns the tag proving the node's identity for the
	// address it gossips on (internal/nodeproof).
	Proof func(gossipAddr string) (string, error)
	// Tune, when set, adjusts the pool configuration before it starts
	// (tests and benchmarks shorten gossip timings with it).
	Tune func(*serfpool.Config)
}

func (c Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("NodeName: must be the node's name"))
	}
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("Servers: give at least one server's gossip address (host[:port])"))
	}
	if c.RejoinInterval < 0 {
		errs = append(errs, fmt.Errorf("RejoinInterval %v: must not be negative", c.RejoinInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gossip: invalid config: %w", err)
	}
	return nil
}

// Member is the node's membership in the pool.
type Member struct {
	cfg  Config
	pool *serfpool.Pool
	log  *slog.Logger

	mu    sync.Mutex
	known []string // gossip addresses of every server seen, plus Config.Servers

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Join starts the node's member of the pool and returns at once; it joins
// through cfg.Servers in the background, retrying with backoff until one
// answers or ctx ends, and from then on rejoins whenever it sees no alive
// server. The member runs until Leave or Close.
func Join(ctx context.Context, cfg Config) (*Member, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RejoinInterval == 0 {
		cfg.RejoinInterval = DefaultRejoinInterval
	}
	mc := serfpool.DefaultConfig()
	mc.NodeName = cfg.NodeName
	mc.Role = serfpool.RoleAgent
	if cfg.BindAddr != "" {
		mc.BindAddr = cfg.BindAddr
	}
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	mc.APIAddr = cfg.KubeletAddr
	mc.Zone = cfg.Zone
	mc.GossipKey = cfg.GossipKey
	mc.Join = slices.Clone(cfg.Servers)
	mc.DataDir = cfg.DataDir
	mc.Proof = cfg.Proof
	mc.Logger = cfg.Logger
	if cfg.Tune != nil {
		cfg.Tune(&mc)
	}
	pool, err := serfpool.Start(ctx, mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: joining the pool as node %q: %w", cfg.NodeName, err)
	}
	m := &Member{cfg: cfg, pool: pool, log: cfg.Logger.With("component", "gossip", "node", cfg.NodeName),
		known: slices.Clone(cfg.Servers), stop: make(chan struct{})}
	m.wg.Add(1)
	go m.watch(ctx)
	return m, nil
}

// Fatal yields the error that must stop the agent: its join found another
// live member using its node name.
func (m *Member) Fatal() <-chan error { return m.pool.Fatal() }

// Addr is the host:port the member gossips on.
func (m *Member) Addr() string { return m.pool.Addr() }

// Members returns every member of the pool, by name.
func (m *Member) Members() []serfpool.Member { return m.pool.Members() }

// Changes is closed at the next membership change (see serfpool.Changes).
func (m *Member) Changes() <-chan struct{} { return m.pool.Changes() }

// Servers returns the servers the member sees alive, by name.
func (m *Member) Servers() []serfpool.Member {
	var out []serfpool.Member
	for _, s := range m.pool.Members() {
		if s.IsServer() && s.Status == serfpool.StatusAlive {
			out = append(out, s)
		}
	}
	return out
}

// watch remembers every server's gossip address and rejoins through them
// when no server is alive any more (the agent was cut off, or every server
// it knew restarted without remembering it), until ctx ends or the member
// stops.
func (m *Member) watch(ctx context.Context) {
	defer m.wg.Done()
	tick := time.NewTicker(m.cfg.RejoinInterval)
	defer tick.Stop()
	for {
		changed := m.pool.Changes()
		m.remember()
		select {
		case <-changed:
			continue
		case <-tick.C:
		case <-ctx.Done():
			return
		case <-m.stop:
			return
		}
		if len(m.Servers()) > 0 {
			continue
		}
		m.mu.Lock()
		addrs := slices.Clone(m.known)
		m.mu.Unlock()
		if err := m.pool.Join(addrs...); err != nil {
			m.log.Warn("no server alive in the gossip pool; rejoin failed, retrying", "servers", addrs, "retry_in", m.cfg.RejoinInterval, "error", err)
		} else {
			m.log.Info("rejoined the gossip pool", "servers", addrs)
		}
	}
}

// remember adds the gossip addresses of the servers in the pool to known.
func (m *Member) remember() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.pool.Members() {
		if s.IsServer() && s.SerfAddr != "" && !slices.Contains(m.known, s.SerfAddr) {
			m.known = append(m.known, s.SerfAddr)
		}
	}
}

// Leave announces that the node leaves the cluster for good, waits for the
// news to spread, and stops the member. The leader then marks the node's
// Ready Unknown after the grace period, as for a node that stopped.
func (m *Member) Leave() error {
	err := m.pool.Leave()
	return errors.Join(err, m.Close())
}

// Close stops the member without leaving: to the others the node looks
// failed, like a crashed node. Safe to call more than once.
func (m *Member) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		m.wg.Wait()
		m.closeErr = m.pool.Shutdown()
	})
	return m.closeErr
}
