package agent

import (
	"context"
	"time"
)

// A node's gossip membership is its heartbeat, but gossip alone would keep
// a node that can reach no API server looking alive: another node relays
// the servers' probes and its refutations. What makes a node healthy is
// that its agent can reach the API (kubelet's Lease says the same), so
// the agent leaves the pool while no server answers, the leader marks the
// Node Unknown after the grace period as for a crashed node, and the agent
// rejoins as soon as a server answers again.
const (
	// apiProbeInterval is how often the agent asks a server whether it is
	// ready: a read served by the API server alone, no raft write.
	apiProbeInterval = 5 * time.Second
	// apiUnreachableAfter is how long no server may answer before the
	// agent leaves the pool: three missed probes, so a leader election or
	// a server restart does not count.
	apiUnreachableAfter = 15 * time.Second
)

// watchAPI probes the API every interval and keeps the node in the gossip
// pool exactly while a server has answered within unreachableAfter.
func (a *Agent) watchAPI(ctx context.Context, interval, unreachableAfter time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.probeAPI(ctx, interval); err == nil {
			lastOK = time.Now()
			if a.member() == nil {
				if err := a.joinGossip(ctx); err != nil {
					a.log.Warn("rejoining the gossip pool", "err", err)
					continue
				}
				a.log.Info("an API server answers again: rejoined the gossip pool")
			}
			continue
		} else if ctx.Err() != nil {
			return
		} else if since := time.Since(lastOK); since >= unreachableAfter && a.member() != nil {
			a.log.Warn("no API server has answered: leaving the gossip pool, so that the cluster sees this node as unreachable until one answers",
				"for", since.Round(time.Second), "err", err)
			a.closeGossip()
		}
	}
}

// probeAPI asks the API servers, through the failover proxy, whether one
// is ready.
func (a *Agent) probeAPI(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return a.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
}
