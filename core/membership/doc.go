// Package membership is what only servers do with the gossip pool
// (internal/serfpool): WaitForBootstrap implements --bootstrap-expect
// (Consul/Nomad style) and Reconcile keeps the raft voter set in step with
// who is alive, adding live servers as voters and removing servers that left
// or stayed dead, following hashicorp/raft-autopilot's safety rules.
//
// A server uses it like this (the raft server ID is the node name):
//
//	token, _ := serfpool.LoadOrCreateToken(dataDir, flagToken)
//	node, _ := raftnode.New(rc, sm) // rc.NodeID = name; rc.Bootstrap only for a lone server
//	servers, _ := membership.FromRaft(node).Servers()
//	cfg.Bootstrapped = len(servers) > 0 // raft state from an earlier run
//	pool, _ := serfpool.Start(ctx, cfg)
//	go membership.Reconcile(ctx, pool, membership.FromRaft(node))
//	if !cfg.Bootstrapped && cfg.BootstrapExpect > 1 {
//		members, err := membership.WaitForBootstrap(ctx, pool, cfg.BootstrapExpect)
//		if err == nil {
//			err = node.Raft().BootstrapCluster(membership.BootstrapConfiguration(members)).Error()
//			// then pool.SetBootstrapped()
//		} // errors.Is(err, ErrClusterExists): wait to be added by the leader
//	}
package membership
