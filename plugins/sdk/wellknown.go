package sdk

// Well-known Keelson names on Kubernetes objects, shared by the control
// plane, the node agent and the plugins that read them.
const (
	// NodeLivenessAnnotation on a Node says where its liveness comes from.
	// The raft leader sets it to NodeLivenessGossip on the Node of every
	// member of the gossip pool: the leader then owns the node's Ready
	// condition (Unknown after the grace period without gossip contact), the
	// node's agent need not renew its Lease, and controllers that watch
	// Leases (node lifecycle) leave the node's health to the leader. A Node
	// without it is watched through its Lease in kube-node-lease, as
	// upstream Kubernetes does.
	NodeLivenessAnnotation = "keelson.io/liveness"
	// NodeLivenessGossip is NodeLivenessAnnotation's value for gossip nodes.
	NodeLivenessGossip = "gossip"
)
