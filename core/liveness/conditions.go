package liveness

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/internal/nodehealth"
)

// Ready's reason and message when a node reachable again is restored.
const (
	ReasonReady     = "KubeletReady"
	MessageRestored = "kubelet is posting ready status (node reachable again through gossip)"
)

// restoreReady turns a Ready=Unknown left by a liveness check back into
// Ready=True, and reports whether it did. The agent reports its real
// conditions again on its next status update; this only spares the node
// the wait when it was merely cut off.
func restoreReady(n *corev1.Node, now metav1.Time) bool {
	if !nodehealth.UnknownByController(n) {
		return false
	}
	c := nodehealth.Condition(n, corev1.NodeReady)
	c.Status, c.Reason, c.Message = corev1.ConditionTrue, ReasonReady, MessageRestored
	c.LastHeartbeatTime, c.LastTransitionTime = now, now
	return true
}
