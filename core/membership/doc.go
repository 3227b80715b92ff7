// Package membership is Keelson's gossip pool: one encrypted serf cluster
// that every server and agent joins, through which servers find each other
// and the raft leader keeps the raft voter set in step with who is alive.
//
// The pool carries each member's role, node name, API, raft and serf
// addresses and zone as serf tags; its gossip is encrypted with an AES-256
// key derived from the cluster token, so a node with another token cannot
// join. On top of the pool, WaitForBootstrap implements --bootstrap-expect
// (Consul/Nomad style) and Reconcile is the loop that adds live servers as
// raft voters and removes servers that left or stayed dead, following
// hashicorp/raft-autopilot's safety rules.
//
// A server uses it like this (the raft server ID is the node name):
//
//	token, _ := membership.LoadOrCreateToken(dataDir, flagToken)
//	node, _ := raftnode.New(rc, sm) // rc.NodeID = name; rc.Bootstrap only for a lone server
//	servers, _ := membership.FromRaft(node).Servers()
//	cfg.Bootstrapped = len(servers) > 0 // raft state from an earlier run
//	pool, _ := membership.Start(ctx, cfg)
//	go pool.Reconcile(ctx, membership.FromRaft(node)) // every server, whole life
//	if !cfg.Bootstrapped && cfg.BootstrapExpect > 1 {
//		members, err := pool.WaitForBootstrap(ctx, cfg.BootstrapExpect)
//		if err == nil {
//			err = node.Raft().BootstrapCluster(membership.BootstrapConfiguration(members)).Error()
//			// then pool.SetBootstrapped()
//		} // errors.Is(err, ErrClusterExists): wait to be added by the leader
//	}
//	// on shutdown: pool.Leave() (graceful) then pool.Shutdown()
package membership
