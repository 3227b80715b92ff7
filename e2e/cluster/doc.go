// Package cluster runs whole keelson clusters end to end: three
// `keelson server`s (--disable-agent, every built-in plugin running on the
// raft leader) and two `keelson agent`s, each in its own network namespace
// on one bridge the test creates, all real processes, and drives them as a
// user would, with kubectl and client-go: nodes join with the token and get
// pod CIDRs, a Deployment's pods spread over both nodes and run on
// containerd, a node killed with kill -9 goes Unknown, is tainted and its
// pods are replaced on the other node, a node whose cable is pulled (its
// agent still running) is evicted the same way and cleans up after itself
// when the cable is back, a node cut off from the servers alone (the other
// node still reaching it) goes Unknown too, an agent outlives the server it
// joined through, and the seed's Services walkthrough works across nodes.
// TestDrain (one server, two agents) drains an agent under a
// PodDisruptionBudget.
//
// It needs root, containerd, runc, iptables and the CNI plugins; tests
// skip without them. Traffic stays on the bridge and inside the namespaces
// (no default route anywhere); images come from a tarball each agent
// imports (internal/testimage), so no registry is reached. Every namespace,
// process, mount and cgroup it makes is removed when the test ends.
package cluster
