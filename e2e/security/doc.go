// Package security tests Keelson's trust boundaries end to end, as an
// attacker with a worker's or a pod author's means would try them: real
// servers and agents, run as root where pods are involved.
package security
