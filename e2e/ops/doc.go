// Package ops tests the operator's view of a running cluster with real
// keelson processes: failures that explain themselves (a duplicate node
// name, a data dir in use), `keelson cluster status` on a healthy and on a
// degraded cluster, and the raft commands run from a follower.
package ops
