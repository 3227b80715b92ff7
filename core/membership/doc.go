// Package membership is Keelson's gossip pool: one encrypted serf cluster
// that every server and agent joins, through which servers find each other
// and the raft leader keeps the raft voter set in step with who is alive.
//
// The pool carries each member's role, node name, API and raft addresses and
// zone as serf tags; its gossip is encrypted with an AES-256 key derived from
// the cluster token, so a node with another token cannot join. On top of the
// pool, WaitForBootstrap implements --bootstrap-expect (Consul/Nomad style)
// and Reconcile is the leader's loop that adds live servers as raft voters
// and removes servers that left or stayed dead, following
// hashicorp/raft-autopilot's safety rules.
package membership
