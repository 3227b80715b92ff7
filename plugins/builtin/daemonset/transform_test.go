package daemonset

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
)

// The pod cache keeps what the DaemonSet controller reads, and the node a
// pod not yet scheduled is meant for.
func TestTransformKeepsWhatTheControllerReads(t *testing.T) {
	p := podfixture.Realistic(3)
	now := metav1.Now()
	p.DeletionTimestamp = &now
	podfixture.Keeps(t, transform, p, podfixture.Owned...)

	pending := podfixture.Realistic(4)
	pending.Spec.NodeName = ""
	pending.Spec.Affinity = nodeAffinity(nil, "node-9")
	podfixture.Keeps(t, transform, pending, podfixture.Field{Name: "target node", Get: func(p *v1.Pod) any { return targetNode(p) }})
	if n := targetNode(pending); n != "node-9" {
		t.Fatalf("fixture targets %q", n)
	}
}
