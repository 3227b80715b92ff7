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
	servers, members, err := s.featureInputs()
	if err != nil {
		return err
	}
	return checkFeatureLevel(typ, need, servers, members)
}

// storeFeatureLevel is the level the gate allows now: the lowest level a
// raft server advertises (keelson cluster status shows it).
func (s *Server) storeFeatureLevel() (int, error) {
	servers, members, err := s.featureInputs()
	if err != nil {
		return 0, err
	}
	return lowestLevel(servers, members), nil
}

// lowestLevel is the lowest level of the raft servers (0 with none).
func lowestLevel(servers []membership.RaftServer, members []serfpool.Member) int {
	lowest := 0
	for _, l := range serverLevels(servers, members) {
		if lowest == 0 || l.level < lowest {
			lowest = l.level
		}
	}
	return lowest
}

func (s *Server) featureInputs() ([]membership.RaftServer, []serfpool.Member, error) {
	servers, err := membership.FromRaft(s.raft).Servers()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the raft configuration for the feature gate: %w", err)
	}
	var members []serfpool.Member
	if s.pool != nil {
		members = s.pool.Members()
	}
	return servers, members, nil
}

type serverLevel struct {
	id    string
	level int
}

// serverLevels is each raft server's advertised level, in configuration
// order; a server advertising none, or not in the pool, is at level 1.
func serverLevels(servers []membership.RaftServer, members []serfpool.Member) []serverLevel {
	levels := make(map[string]int, len(members))
	for _, m := range members {
		if m.IsServer() {
			levels[m.Name] = m.FeatureLevel
		}
	}
	out := make([]serverLevel, 0, len(servers))
	for _, srv := range servers {
		out = append(out, serverLevel{id: srv.ID, level: max(levels[srv.ID], 1)})
	}
	return out
}

// checkFeatureLevel reports the first server whose advertised level is
// below need.
func checkFeatureLevel(typ byte, need int, servers []membership.RaftServer, members []serfpool.Member) error {
	for _, l := range serverLevels(servers, members) {
		if l.level < need {
			return fmt.Errorf("store command type %d needs feature level %d on every server, but server %s is at level %d: "+
				"finish upgrading every server (keelson cluster status shows each one's version and level) before using it", typ, need, l.id, l.level)
		}
	}
	return nil
}
