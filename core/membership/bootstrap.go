package membership

import (
	"github.com/keelson/keelson/internal/serfpool"

	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ErrClusterExists is returned by WaitForBootstrap when a server in the pool
// (possibly this one) already holds raft state: the cluster exists, so this
// server must not bootstrap; it waits for the leader to add it instead.
var ErrClusterExists = errors.New("membership: a raft cluster already exists")

// bootstrapPoll re-checks the pool in case a change notification was missed
// (a tag update racing with the check).
const bootstrapPoll = time.Second

// WaitForBootstrap blocks until at least expect alive servers are in the pool
// and returns them sorted by name. It returns ErrClusterExists (wrapped, with
// the server that has state) as soon as any alive server reports raft state,
// including this one, and an error naming BootstrapExpect when servers
// disagree about it. This node must be a server.
//
// The caller then bootstraps raft with BootstrapConfiguration(servers). Every
// server that sees the same set computes the same configuration, and
// hashicorp/raft accepts the same bootstrap configuration on every server
// (the resulting identical entry at index 1 is consistent). Start exactly
// expect servers with --bootstrap-expect; servers started later join the
// existing cluster through the leader's reconciler.
func WaitForBootstrap(ctx context.Context, p *serfpool.Pool, expect int) ([]serfpool.Member, error) {
	if p.Config().Role != serfpool.RoleServer {
		return nil, fmt.Errorf("membership: WaitForBootstrap on %q: only servers bootstrap raft", p.Config().NodeName)
	}
	if expect < 1 {
		return nil, fmt.Errorf("membership: BootstrapExpect %d: must be at least 1 to bootstrap", expect)
	}
	logged := -1
	for {
		changed := p.Changes()
		servers, err := bootstrapServers(p.Members(), expect)
		if err != nil || len(servers) >= expect {
			if err == nil {
				if len(servers) > expect {
					p.Logger().Warn("more servers than bootstrap-expect; bootstrapping with all of them",
						"expect", expect, "servers", len(servers))
				}
				p.Logger().Info("bootstrap-expect reached", "expect", expect, "servers", memberNames(servers))
			}
			return servers, err
		}
		if len(servers) != logged {
			logged = len(servers)
			p.Logger().Info("waiting for servers to bootstrap", "expect", expect, "seen", memberNames(servers))
		}
		t := time.NewTimer(bootstrapPoll)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("membership: waiting for %d servers to bootstrap (saw %d): %w",
				expect, len(servers), context.Cause(ctx))
		case <-p.Done():
			t.Stop()
			return nil, errors.New("membership: pool shut down while waiting to bootstrap")
		}
		t.Stop()
	}
}

// bootstrapServers picks the alive servers from members (sorted by name) and
// checks that none has raft state and that all agree on expect.
func bootstrapServers(members []serfpool.Member, expect int) ([]serfpool.Member, error) {
	var servers []serfpool.Member
	for _, m := range members {
		if !m.IsServer() || m.Status != serfpool.StatusAlive || m.RaftAddr == "" {
			continue
		}
		if m.Bootstrapped {
			return nil, fmt.Errorf("%w: server %q has raft state", ErrClusterExists, m.Name)
		}
		if m.BootstrapExpect != 0 && m.BootstrapExpect != expect {
			return nil, fmt.Errorf("membership: BootstrapExpect: server %q has --bootstrap-expect %d, this one %d: "+
				"set the same value on every server", m.Name, m.BootstrapExpect, expect)
		}
		servers = append(servers, m)
	}
	return servers, nil
}

// BootstrapConfiguration is the raft configuration to bootstrap with: every
// given server as a voter, ID = node name, in name order, so every server
// computes the identical configuration.
func BootstrapConfiguration(servers []serfpool.Member) raft.Configuration {
	var c raft.Configuration
	for _, m := range sortedByName(servers) {
		c.Servers = append(c.Servers, raft.Server{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(m.Name),
			Address:  raft.ServerAddress(m.RaftAddr),
		})
	}
	return c
}

func memberNames(ms []serfpool.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}
