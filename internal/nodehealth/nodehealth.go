// Package nodehealth is what the control plane, the node agent and node
// lifecycle plugins share about a node's health: where it comes from
// (gossip or a Lease) and the conditions a node gets when it stops
// reporting, worded as upstream Kubernetes words them. Plugins reach it
// through plugins/sdk/nodehealth, which re-exports it.
package nodehealth

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// LivenessAnnotation on a Node says where its liveness comes from. The
	// raft leader sets it to LivenessGossip on the Node of every member of
	// the gossip pool: the leader then owns the node's Ready condition
	// (Unknown after the grace period without gossip contact), the node's
	// agent need not renew its Lease, and node lifecycle controllers leave
	// the node's health to the leader. A Node without it is watched through
	// its Lease in kube-node-lease, as upstream Kubernetes does.
	LivenessAnnotation = "keelson.io/liveness"
	// LivenessGossip is LivenessAnnotation's value for gossip nodes.
	LivenessGossip = "gossip"
)

// Reasons and messages of the conditions written for a node that stopped
// reporting: upstream's node lifecycle controller's, so tools that read
// them (kubectl describe, alerting rules) see what they expect.
const (
	ReasonUnknown       = "NodeStatusUnknown"
	MessageUnknown      = "Kubelet stopped posting node status."
	ReasonNeverUpdated  = "NodeStatusNeverUpdated"
	MessageNeverUpdated = "Kubelet never posted node status."
)

// AgentConditions are the conditions only the node's agent can measure;
// without contact they all become Unknown. NetworkUnavailable belongs to
// the control plane and is left alone, as upstream does.
var AgentConditions = []corev1.NodeConditionType{
	corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure,
}

// IsGossip reports whether the Node's liveness comes from the gossip pool.
func IsGossip(n *corev1.Node) bool {
	return n.Annotations[LivenessAnnotation] == LivenessGossip
}

// MarkUnknown sets the agent's conditions to Unknown, as upstream's node
// lifecycle controller does for a node that stopped posting status (a
// condition the agent never posted is added as never updated), and reports
// whether anything changed.
func MarkUnknown(n *corev1.Node, now metav1.Time) bool {
	changed := false
	for _, typ := range AgentConditions {
		c := Condition(n, typ)
		switch {
		case c == nil:
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{
				Type: typ, Status: corev1.ConditionUnknown,
				Reason: ReasonNeverUpdated, Message: MessageNeverUpdated,
				LastHeartbeatTime: n.CreationTimestamp, LastTransitionTime: now,
			})
			changed = true
		case c.Status != corev1.ConditionUnknown:
			c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionUnknown, ReasonUnknown, MessageUnknown, now
			changed = true
		}
	}
	return changed
}

// AllUnknown reports whether every agent condition is already Unknown.
func AllUnknown(n *corev1.Node) bool {
	for _, typ := range AgentConditions {
		if c := Condition(n, typ); c == nil || c.Status != corev1.ConditionUnknown {
			return false
		}
	}
	return true
}

// UnknownByController reports whether Ready is the Unknown a liveness check
// (the leader's gossip check, or a Lease check) wrote, as opposed to one
// the agent itself reported.
func UnknownByController(n *corev1.Node) bool {
	c := Condition(n, corev1.NodeReady)
	return c != nil && c.Status == corev1.ConditionUnknown && c.Reason == ReasonUnknown
}

// Condition returns the Node's condition of type typ, or nil.
func Condition(n *corev1.Node, typ corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == typ {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}
