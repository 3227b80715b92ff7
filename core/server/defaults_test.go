package server

import (
	"testing"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/raftnode"
)

// TestRaftDefaultsAgree keeps one set of raft defaults: config (the flags a
// server runs with) spells raftnode.DefaultConfig's figures, because config
// does not import core.
func TestRaftDefaultsAgree(t *testing.T) {
	c, r := config.DefaultServer().Raft, raftnode.DefaultConfig()
	for _, f := range []struct {
		name      string
		cfg, node any
	}{
		{"heartbeatTimeout", c.HeartbeatTimeout.Duration, r.HeartbeatTimeout},
		{"electionTimeout", c.ElectionTimeout.Duration, r.ElectionTimeout},
		{"leaderLeaseTimeout", c.LeaderLeaseTimeout.Duration, r.LeaderLeaseTimeout},
		{"maxTimeoutMultiplier", c.MaxTimeoutMultiplier, r.MaxTimeoutMultiplier},
		{"snapshotThreshold", c.SnapshotThreshold, r.SnapshotThreshold},
		{"snapshotInterval", c.SnapshotInterval.Duration, r.SnapshotInterval},
		{"trailingLogs", c.TrailingLogs, r.TrailingLogs},
		{"applyTimeout", c.ApplyTimeout.Duration, r.ApplyTimeout},
		{"logStore", c.LogStore, r.LogStore},
	} {
		if f.cfg != f.node {
			t.Errorf("raft.%s: config default %v, raftnode default %v", f.name, f.cfg, f.node)
		}
	}
}
