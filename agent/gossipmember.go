package agent

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/keelson/keelson/agent/gossip"
	"github.com/keelson/keelson/internal/join"
	"github.com/keelson/keelson/internal/serfpool"
	v1 "k8s.io/api/core/v1"
)

// joinGossip makes the agent a member of the serf pool: its heartbeat, at
// no raft write (see agent/gossip).
func (a *Agent) joinGossip(ctx context.Context) error {
	var servers []string
	for _, s := range a.loadServers() {
		if s.Gossip != "" {
			servers = append(servers, s.Gossip)
		}
	}
	key, err := a.creds.GossipKey()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	m, err := gossip.Join(ctx, gossip.Config{
		NodeName:    a.cfg.NodeName,
		Zone:        a.cfg.NodeLabels[v1.LabelTopologyZone],
		KubeletAddr: net.JoinHostPort(a.ip.String(), strconv.Itoa(a.cfg.Kubelet.Port)),
		GossipKey:   key,
		Proof:       a.creds.GossipProof,
		Servers:     servers,
		BindAddr:    net.JoinHostPort(a.ip.String(), strconv.Itoa(a.cfg.SerfPort)),
		DataDir:     a.dir,
		Logger:      a.log,
		Tune: func(c *serfpool.Config) {
			// Zero (a config built in code, not loaded): the pool's default.
			if g := a.cfg.Gossip; g.ProbeInterval.Duration > 0 {
				c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = g.ProbeInterval.Duration, g.ProbeTimeout.Duration, g.SuspicionMult
			}
		},
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.gossipMu.Lock()
	a.gossip = m
	a.gossipMu.Unlock()
	return nil
}

// member is the node's gossip membership, nil while it is closed.
func (a *Agent) member() *gossip.Member {
	a.gossipMu.Lock()
	defer a.gossipMu.Unlock()
	return a.gossip
}

// closeGossip stops the node's gossip membership, if it runs.
func (a *Agent) closeGossip() {
	a.gossipMu.Lock()
	m := a.gossip
	a.gossip = nil
	a.gossipMu.Unlock()
	if m != nil {
		if err := m.Close(); err != nil {
			a.log.Warn("stopping the gossip member", "err", err)
		}
	}
}

// followServers keeps the list of servers current from the gossip pool.
func (a *Agent) followServers(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		member := a.member()
		if member == nil {
			continue
		}
		var servers []join.Server
		for _, m := range member.Servers() {
			if m.APIAddr != "" {
				servers = append(servers, join.Server{API: m.APIAddr, Gossip: m.SerfAddr})
			}
		}
		a.learnServers(a.provenServers(ctx, servers))
	}
}
