// Package raftnode is Keelson's consensus layer: it runs one hashicorp/raft
// server (bolt log and stable store, file snapshots, TCP or mutual-TLS
// transport) and exposes the few operations the store needs — proposing a
// command, a linearizable read barrier, waiting for the local state machine
// to catch up, and observing leadership.
//
// Proposals and reads work on every server: a follower forwards them to the
// leader over the raft port, which is shared by raft and that RPC (the first
// byte of each connection says which; see transport.go and rpc.go).
//
// The state machine itself (package fsm) is plugged in through the
// StateMachine interface; raftnode never interprets command bytes.
package raftnode
