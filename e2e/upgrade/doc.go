// Package upgrade upgrades a running cluster from the previous release to
// the binary under test, as an operator would: three servers one at a time
// (stop, swap the binary, start, wait until the cluster is healthy; the
// leader last), then the node agents, while a client writes through the
// Kubernetes API and a Deployment serves through a NodePort Service. It
// checks that every acknowledged write is readable afterwards, that
// neither the API nor the Service stopped answering for longer than a
// leader election, that the agents adopted their pods without restarting
// them, that `keelson cluster status` shows every member's version and
// store feature level throughout, and that the store's feature gate holds
// back raft commands the older servers cannot apply until the last of them
// is upgraded.
//
// The previous release is built from the commit BaseCommit names (or
// KEELSON_UPGRADE_FROM) with that commit's own Makefile, once: it is cached
// in keelson-upgrade/<commit>/ under the user cache directory (~/.cache,
// beside Go's build cache; KEELSON_UPGRADE_CACHE overrides it), outside the
// clone, so CI's clean clones share it. The first run pays for that build
// (about as long as a `make build`); later runs reuse the binary.
//
// It needs root, `ip netns` and what node agents need; it skips without
// them.
package upgrade
