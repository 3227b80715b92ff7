package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Config configures one raft server. Start from DefaultConfig and set NodeID,
// DataDir and BindAddr; every other field has a working default.
type Config struct {
	// NodeID is this server's permanent raft identity. It must be unique in
	// the cluster and must not change across restarts on the same DataDir.
	NodeID string

	// DataDir holds raft.db (the stable store: term and vote), the log (in
	// wal/ or in raft.db, see LogStore) and snapshots/. It is created if
	// missing.
	DataDir string

	// LogStore is where the raft log is kept: LogStoreWAL (default), a
	// segmented write-ahead log with one fsync per batch of entries, or
	// LogStoreBoltDB, raft.db as before the WAL existed. A data dir whose
	// log is in the other store has it moved on start (one log line says
	// which store is used and why).
	LogStore string

	// WALSegmentSize is the size in bytes each WAL segment file is
	// preallocated to; the log is truncated a segment at a time. Default
	// 16 MiB.
	WALSegmentSize int

	// BindAddr is the host:port of the raft port, which carries raft itself
	// and the forwarding of writes and reads to the leader. Port 0 picks a
	// free port (tests); then AdvertiseAddr must be empty so the bound
	// address is advertised.
	BindAddr string

	// AdvertiseAddr is the host:port other servers dial to reach this one.
	// Empty means the bound listener address, which must then be routable
	// (not 0.0.0.0).
	AdvertiseAddr string

	// Bootstrap makes this server bootstrap a single-voter cluster of itself
	// when DataDir holds no raft state. On existing state it is a no-op, so
	// it is safe to leave set across restarts.
	Bootstrap bool

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one. Default 8192.
	SnapshotThreshold uint64

	// SnapshotInterval is how often raft checks whether SnapshotThreshold is
	// exceeded. Default 30s.
	SnapshotInterval time.Duration

	// TrailingLogs is how many entries are kept in the log after a snapshot
	// so a slightly lagging follower can catch up without a full snapshot
	// install. Default 10240.
	TrailingLogs uint64

	// HeartbeatTimeout is how long a follower waits without hearing from the
	// leader before starting an election (etcd's election timeout, 1s
	// there); the leader heartbeats every tenth of it. Default 500ms, which
	// keeps failover under 3s (make bench: bench-ha) while tolerating GC
	// pauses.
	HeartbeatTimeout time.Duration

	// ElectionTimeout is how long a candidate waits for an election to
	// finish before retrying. Default 500ms.
	ElectionTimeout time.Duration

	// LeaderLeaseTimeout is how long a leader stays leader without contact
	// from a quorum. It must not exceed HeartbeatTimeout. Default 500ms,
	// the HeartbeatTimeout: keelson's reads do not trust the lease (a
	// majority confirms each), so a shorter one only made a busy leader
	// step down sooner (250ms let a new leader starting its plugins on a
	// large cluster lose its lease every few seconds).
	LeaderLeaseTimeout time.Duration

	// MaxTimeoutMultiplier bounds how far this server raises its own
	// HeartbeatTimeout and ElectionTimeout while it is starved of CPU: it
	// measures how late its goroutines run and, while it follows, waits up
	// to this many times longer before it takes a silent leader for dead,
	// lowering the factor again step by step once it runs on time (see
	// health.go). 1 turns this off. Default 4.
	MaxTimeoutMultiplier int

	// CommitTimeout bounds how long the leader waits before sending an
	// AppendEntries without new entries, which is what propagates the commit
	// index to followers when the cluster is idle. Default 50ms.
	CommitTimeout time.Duration

	// ApplyTimeout bounds how long Apply waits for raft to accept (enqueue)
	// a command when the caller's context has no earlier deadline. After
	// enqueue, only the caller's context bounds the wait. Default 10s.
	ApplyTimeout time.Duration

	// LeaderWaitTimeout bounds how long Apply and LinearizableRead on a
	// server that is not the leader wait for a leader to be known, including
	// retries after the leader they asked stepped down, before failing with
	// ErrNoLeader. The caller's context can only shorten it. Zero means
	// ApplyTimeout.
	LeaderWaitTimeout time.Duration

	// TLS, when set, wraps every connection to the raft port in TLS: raft's
	// own and the forwarding of writes and read-index requests to the
	// leader. For mutual TLS (so only cluster members can forward) it must
	// carry Certificates, RootCAs, ClientCAs and
	// ClientAuth = tls.RequireAndVerifyClientCert; the same config is used
	// for dialing and accepting.
	TLS *tls.Config

	// Version names the software that proposes on this node (such as
	// "keelson v1.4.0"); it is recorded with every entry this node appends
	// as leader, so a server that cannot apply an entry can say which
	// version wrote it. Optional.
	Version string

	// Logger receives raft's own log lines (bridged from hclog) and
	// raftnode's. Default slog.Default().
	Logger *slog.Logger

	// wrapLogStore, set only by tests, wraps the raft log store (under
	// raft's log cache) to inject its failures.
	wrapLogStore func(raft.LogStore) raft.LogStore
}

// maxTimeoutMultiplier bounds MaxTimeoutMultiplier: past it a starved
// follower would take minutes to notice a dead leader.
const maxTimeoutMultiplier = 10

// WALSegmentSize bounds: a page, and raft-wal's largest file.
const (
	minWALSegmentSize = 4 << 10
	maxWALSegmentSize = 1 << 30
)

// DefaultConfig returns a Config with every tunable at its default; the
// caller fills in NodeID, DataDir and BindAddr. These are the defaults a
// server runs: config.DefaultServer spells the same figures for its flags,
// and core/server's TestRaftDefaultsAgree keeps the two equal.
func DefaultConfig() Config {
	return Config{
		LogStore:             LogStoreWAL,
		WALSegmentSize:       16 << 20,
		SnapshotThreshold:    8192,
		SnapshotInterval:     30 * time.Second,
		TrailingLogs:         10240,
		HeartbeatTimeout:     500 * time.Millisecond,
		ElectionTimeout:      500 * time.Millisecond,
		LeaderLeaseTimeout:   500 * time.Millisecond,
		MaxTimeoutMultiplier: 4,
		CommitTimeout:        50 * time.Millisecond,
		ApplyTimeout:         10 * time.Second,
	}
}

// Validate reports the first field that is missing or inconsistent, by name.
func (c Config) Validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("BindAddr %q is not host:port: %w", c.BindAddr, err))
	}
	if c.AdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.AdvertiseAddr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("AdvertiseAddr %q is not host:port: %w", c.AdvertiseAddr, err))
		case port == "0":
			errs = append(errs, fmt.Errorf("AdvertiseAddr %q: port 0 cannot be dialed", c.AdvertiseAddr))
		case net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified():
			errs = append(errs, fmt.Errorf("AdvertiseAddr %q: unspecified address cannot be dialed", c.AdvertiseAddr))
		}
	}
	positive := []struct {
		name string
		v    time.Duration
	}{
		{"SnapshotInterval", c.SnapshotInterval},
		{"HeartbeatTimeout", c.HeartbeatTimeout},
		{"ElectionTimeout", c.ElectionTimeout},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout},
		{"CommitTimeout", c.CommitTimeout},
		{"ApplyTimeout", c.ApplyTimeout},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be > 0, got %v", p.name, p.v))
		}
	}
	if c.LeaderWaitTimeout < 0 {
		errs = append(errs, fmt.Errorf("LeaderWaitTimeout must be >= 0 (0 means ApplyTimeout), got %v", c.LeaderWaitTimeout))
	}
	if c.LogStore != LogStoreWAL && c.LogStore != LogStoreBoltDB {
		errs = append(errs, fmt.Errorf("LogStore %q is not a raft log store: use %q or %q", c.LogStore, LogStoreWAL, LogStoreBoltDB))
	}
	if c.WALSegmentSize < minWALSegmentSize || c.WALSegmentSize > maxWALSegmentSize {
		errs = append(errs, fmt.Errorf("WALSegmentSize must be between %d and %d bytes, got %d", minWALSegmentSize, maxWALSegmentSize, c.WALSegmentSize))
	}
	if c.MaxTimeoutMultiplier < 1 || c.MaxTimeoutMultiplier > maxTimeoutMultiplier {
		errs = append(errs, fmt.Errorf("MaxTimeoutMultiplier must be between 1 (off) and %d, got %d", maxTimeoutMultiplier, c.MaxTimeoutMultiplier))
	}
	if c.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("SnapshotThreshold must be > 0"))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("TLS has no certificate: set TLS.Certificates (used both to serve and as the client certificate)"))
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("LeaderLeaseTimeout (%v) must not exceed HeartbeatTimeout (%v)",
			c.LeaderLeaseTimeout, c.HeartbeatTimeout))
	}
	if c.ElectionTimeout < c.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("ElectionTimeout (%v) must be >= HeartbeatTimeout (%v)",
			c.ElectionTimeout, c.HeartbeatTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("raftnode config: %w", err)
	}
	return nil
}
