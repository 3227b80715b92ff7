// Package ops tests the operator's day-2 procedures end to end with real
// keelson processes: failures that explain themselves (a duplicate node
// name, a data dir in use), `keelson cluster status` on a healthy and on a
// degraded cluster, the raft commands run from a follower, scheduled
// snapshots, and removing Keelson from a host after a crash (`keelson
// killall`, `keelson uninstall`).
package ops
