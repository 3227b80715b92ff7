// Package serfpool is Keelson's gossip pool: one encrypted serf cluster that
// every server and agent joins. Servers and agents both use it, so it lives
// outside core/ and agent/ (an agent never imports core).
//
// The pool carries each member's role, node name, API, raft and serf
// addresses and zone as serf tags; its gossip is encrypted with an AES-256
// key derived from the server token (GossipKey), so a node with another
// token cannot join. Node agents never hold the server token: a server hands
// them the key itself with their credentials (Config.GossipKey). Probe and CrossCheck let servers ask other members
// whether a node answers. What only servers do with the pool (bootstrap-expect
// and the raft voter reconciler) is in core/membership.
//
// Usage:
//
//	pool, _ := serfpool.Start(ctx, cfg)
//	members := pool.Members()
//	<-pool.Changes() // next membership change
//	// on shutdown: pool.Leave() (graceful) then pool.Shutdown()
//
// Error messages keep the "membership:" prefix operators know.
package serfpool
