package serfpool

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"
)

// DefaultPort is the serf port used when BindAddr or AdvertiseAddr has none.
const DefaultPort = 7946

// Role says what a member is. Only servers take part in raft.
type Role string

const (
	RoleServer Role = "server"
	RoleAgent  Role = "agent"
)

// Config configures one member of the pool. Start from DefaultConfig and set
// NodeName, Role, Token and, for servers, RaftAddr and APIAddr.
type Config struct {
	// NodeName is the member's unique name in the pool. For servers it is
	// also the raft server ID, so it must not change across restarts.
	NodeName string

	// Role is "server" or "agent".
	Role Role

	// BindAddr is the host:port serf listens on (UDP and TCP). A missing
	// port means 7946; port 0 picks a free one (tests). Default
	// "0.0.0.0:7946".
	BindAddr string

	// AdvertiseAddr is the host:port other members reach this one at.
	// Empty means BindAddr, or this host's private IP when BindAddr is
	// 0.0.0.0 (memberlist picks it).
	AdvertiseAddr string

	// APIAddr is the host:port of this member's API endpoint (kube-apiserver
	// for servers, the kubelet-compatible server for agents). Published as a
	// tag; optional.
	APIAddr string
	// Proof, when set, returns the tag value proving this member's node
	// identity for the address it gossips on (internal/nodeproof); agents
	// set it.
	Proof func(gossipAddr string) (string, error)
	// proof is Proof's answer, published with the other tags.
	proof string

	// RaftAddr is the raft transport host:port of a server; required for
	// servers, must be empty for agents.
	RaftAddr string

	// Zone is the failure zone published as a tag; optional.
	Zone string

	// FeatureLevel is the store feature level a server advertises
	// (fsm.FeatureLevel), so the others propose new command types only once
	// every server can apply them; 0 advertises none.
	FeatureLevel int

	// Token is the cluster token (see LoadOrCreateToken). The gossip
	// encryption key is derived from it; members with different tokens
	// cannot talk to each other.
	Token string

	// GossipKey, when set, is the 32-byte gossip encryption key itself,
	// used instead of deriving it from Token: node agents receive it from a
	// server with their credentials and never hold the server token.
	GossipKey []byte

	// Join lists host[:port] addresses of existing members. Start keeps
	// trying them with backoff until one answers or its context ends.
	Join []string

	// BootstrapExpect is the number of servers that bootstrap a new cluster
	// together (0: this server does not take part in bootstrapping). Every
	// server of a cluster should carry the same value; it is published as a
	// tag and WaitForBootstrap refuses to proceed on a mismatch. The
	// reconciler never removes dead voters below it.
	BootstrapExpect int

	// Bootstrapped says this server already holds raft state (it was part
	// of a cluster before). Published as a tag: a server that sees it never
	// bootstraps a new cluster. Set it at start from raft's existing state,
	// and later with Pool.SetBootstrapped.
	Bootstrapped bool

	// DataDir, when set, holds serf's snapshot (DataDir/serf/local.snapshot)
	// so a restarted member rejoins the members it knew. Optional.
	DataDir string

	// Logger receives the pool's log lines and serf's and memberlist's
	// (bridged from their standard loggers). Default slog.Default().
	Logger *slog.Logger

	// OnEvent, when set, is called for every membership change, in order,
	// from the pool's event goroutine. It must not block: serf stalls while
	// it runs. Hand the event to your own queue.
	OnEvent func(Event)

	// ProbeInterval is how often memberlist probes a random member.
	// Default 1s (memberlist's LAN profile).
	ProbeInterval time.Duration

	// ProbeTimeout is how long a probe waits for an ack before asking other
	// members to probe indirectly. Default 500ms.
	ProbeTimeout time.Duration

	// GossipInterval is how often queued gossip is sent. Default 200ms.
	GossipInterval time.Duration

	// PushPullInterval is how often a full state sync with a random member
	// happens. Default 30s.
	PushPullInterval time.Duration

	// TCPTimeout bounds TCP connections for joins and state syncs.
	// Default 10s.
	TCPTimeout time.Duration

	// SuspicionMult scales how long a suspected member has to refute before
	// it is declared failed. Default 4.
	SuspicionMult int

	// DeadNodeReclaimTime is how long after a member failed or left another
	// node may take over its name from a different address (a server that
	// came back with a new IP). memberlist's default, never, would lock the
	// name out until serf reaps the member days later. Default 30s.
	DeadNodeReclaimTime time.Duration

	// LeavePropagateDelay is how long Leave waits for the leave message to
	// spread before returning. Default 1s.
	LeavePropagateDelay time.Duration

	// RetryJoinInterval is the first wait between join attempts; it doubles
	// up to RetryJoinMaxInterval. Defaults 1s and 30s.
	RetryJoinInterval    time.Duration
	RetryJoinMaxInterval time.Duration

	// ReconcileInterval is how often the leader's Reconcile loop re-checks
	// raft against the pool when no membership event wakes it. Default 10s.
	ReconcileInterval time.Duration

	// DeadServerGrace is how long a failed server (or a raft server unknown
	// to the pool) must stay so before the reconciler removes it from raft.
	// A server rebooting within the grace period keeps its vote. Default 2m.
	DeadServerGrace time.Duration

	// MinQuorum is the fewest voters the reconciler leaves when removing dead
	// servers (autopilot's MinQuorum). The effective floor is the larger of
	// MinQuorum and BootstrapExpect. Default 0.
	MinQuorum int
}

// DefaultConfig returns a Config with every timing at its production default;
// NodeName, Role, Token and the addresses are left for the caller.
func DefaultConfig() Config {
	return Config{
		Role:                 RoleServer,
		BindAddr:             net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort)),
		ProbeInterval:        time.Second,
		ProbeTimeout:         500 * time.Millisecond,
		GossipInterval:       200 * time.Millisecond,
		PushPullInterval:     30 * time.Second,
		TCPTimeout:           10 * time.Second,
		SuspicionMult:        4,
		DeadNodeReclaimTime:  30 * time.Second,
		LeavePropagateDelay:  time.Second,
		RetryJoinInterval:    time.Second,
		RetryJoinMaxInterval: 30 * time.Second,
		ReconcileInterval:    10 * time.Second,
		DeadServerGrace:      2 * time.Minute,
	}
}

// serf's own node-name rule (ValidateNodeNames), checked here so the error
// names the field.
var nodeNameRE = regexp.MustCompile(`^[A-Za-z0-9.\-]{1,128}$`)

// Validate checks the configuration and names the offending field.
func (c Config) Validate() error {
	var errs []error
	if !nodeNameRE.MatchString(c.NodeName) {
		errs = append(errs, fmt.Errorf("NodeName %q: must be 1-128 letters, digits, '-' or '.'", c.NodeName))
	}
	switch c.Role {
	case RoleServer:
		if c.RaftAddr == "" {
			errs = append(errs, errors.New("missing RaftAddr: a server needs its raft transport host:port"))
		} else if _, err := splitAddr(c.RaftAddr, -1); err != nil {
			errs = append(errs, fmt.Errorf("RaftAddr: %w", err))
		}
	case RoleAgent:
		if c.RaftAddr != "" {
			errs = append(errs, fmt.Errorf("RaftAddr %q: must be empty for an agent", c.RaftAddr))
		}
		if c.BootstrapExpect != 0 {
			errs = append(errs, fmt.Errorf("BootstrapExpect %d: only servers bootstrap raft", c.BootstrapExpect))
		}
	default:
		errs = append(errs, fmt.Errorf("Role %q: must be %q or %q", c.Role, RoleServer, RoleAgent))
	}
	switch {
	case c.Token == "" && len(c.GossipKey) == 0:
		errs = append(errs, errors.New("missing Token: the cluster token (see --token) or the GossipKey derived from it is required"))
	case len(c.GossipKey) != 0 && len(c.GossipKey) != 32:
		errs = append(errs, fmt.Errorf("GossipKey: %d bytes, want 32 (AES-256)", len(c.GossipKey)))
	}
	if _, err := splitAddr(c.BindAddr, DefaultPort); err != nil {
		errs = append(errs, fmt.Errorf("BindAddr: %w", err))
	}
	if c.AdvertiseAddr != "" {
		if _, err := splitAddr(c.AdvertiseAddr, DefaultPort); err != nil {
			errs = append(errs, fmt.Errorf("AdvertiseAddr: %w", err))
		}
	}
	if c.APIAddr != "" {
		if _, err := splitAddr(c.APIAddr, -1); err != nil {
			errs = append(errs, fmt.Errorf("APIAddr: %w", err))
		}
	}
	for i, j := range c.Join {
		if _, err := splitAddr(j, DefaultPort); err != nil {
			errs = append(errs, fmt.Errorf("entry %d of Join: %w", i, err))
		}
	}
	errs = append(errs, c.validateTimings()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("membership: invalid config: %w", err)
	}
	return nil
}

// validateTimings checks the counts and durations.
func (c Config) validateTimings() []error {
	var errs []error
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("BootstrapExpect %d: must not be negative", c.BootstrapExpect))
	}
	if c.MinQuorum < 0 {
		errs = append(errs, fmt.Errorf("MinQuorum %d: must not be negative", c.MinQuorum))
	}
	if c.SuspicionMult < 1 {
		errs = append(errs, fmt.Errorf("SuspicionMult %d: must be at least 1", c.SuspicionMult))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", c.ProbeInterval},
		{"ProbeTimeout", c.ProbeTimeout},
		{"GossipInterval", c.GossipInterval},
		{"PushPullInterval", c.PushPullInterval},
		{"TCPTimeout", c.TCPTimeout},
		{"RetryJoinInterval", c.RetryJoinInterval},
		{"RetryJoinMaxInterval", c.RetryJoinMaxInterval},
		{"ReconcileInterval", c.ReconcileInterval},
		{"DeadNodeReclaimTime", c.DeadNodeReclaimTime},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.name, d.v))
		}
	}
	if c.LeavePropagateDelay < 0 {
		errs = append(errs, fmt.Errorf("LeavePropagateDelay %v: must not be negative", c.LeavePropagateDelay))
	}
	if c.DeadServerGrace < 0 {
		errs = append(errs, fmt.Errorf("DeadServerGrace %v: must not be negative", c.DeadServerGrace))
	}
	if c.ProbeTimeout > c.ProbeInterval && c.ProbeInterval > 0 {
		errs = append(errs, fmt.Errorf("ProbeTimeout %v: must not exceed ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval))
	}
	if c.RetryJoinMaxInterval < c.RetryJoinInterval {
		errs = append(errs, fmt.Errorf("RetryJoinMaxInterval %v: must not be less than RetryJoinInterval %v", c.RetryJoinMaxInterval, c.RetryJoinInterval))
	}
	return errs
}

// hostPort is a parsed host:port.
type hostPort struct {
	host string
	port int
}

func (h hostPort) String() string { return net.JoinHostPort(h.host, strconv.Itoa(h.port)) }

// splitAddr parses host[:port]; a missing port becomes defPort, or is an
// error when defPort is negative.
func splitAddr(addr string, defPort int) (hostPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		if defPort < 0 {
			return hostPort{}, fmt.Errorf("%q: want host:port: %w", addr, err)
		}
		// No port (or a bare IPv6 address): take the whole thing as host.
		host, portStr = addr, strconv.Itoa(defPort)
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
	}
	if host == "" {
		return hostPort{}, fmt.Errorf("%q: missing host", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return hostPort{}, fmt.Errorf("%q: bad port %q", addr, portStr)
	}
	return hostPort{host: host, port: port}, nil
}
