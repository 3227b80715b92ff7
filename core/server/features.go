package server

import (
	"fmt"

	"github.com/keelson/keelson/core/membership"
	"github.com/keelson/keelson/fsm"
	"github.com/keelson/keelson/internal/serfpool"
)

// commandGate is the cluster-wide feature gate of the store (see
// fsm/features.go): a command type newer than level 1 is proposed only
// once every server in the raft configuration advertises a feature level
// that includes it. A server whose level is unknown (not in the gossip
// pool, or a version that advertises none) counts as level 1, so a rolling
// upgrade turns a feature on only after its last server is upgraded.
func (s *Server) commandGate(typ byte) error {
	need := fsm.CommandLevel(typ)
	if need <= 1 {
		return nil
	}
	servers, err := membership.FromRaft(s.raft).Servers()
	if err != nil {
		return fmt.Errorf("reading the raft configuration for the feature gate: %w", err)
	}
	var members []serfpool.Member
	if s.pool != nil {
		members = s.pool.Members()
	}
	return checkFeatureLevel(typ, need, servers, members)
}

// checkFeatureLevel reports the first server whose advertised level is
// below need.
func checkFeatureLevel(typ byte, need int, servers []membership.RaftServer, members []serfpool.Member) error {
	levels := make(map[string]int, len(members))
	for _, m := range members {
		if m.IsServer() {
			levels[m.Name] = m.FeatureLevel
		}
	}
	for _, srv := range servers {
		level := max(levels[srv.ID], 1)
		if level < need {
			return fmt.Errorf("store command type %d needs feature level %d on every server, but server %s is at level %d: "+
				"finish upgrading every server (keelson members shows them) before using it", typ, need, srv.ID, level)
		}
	}
	return nil
}
