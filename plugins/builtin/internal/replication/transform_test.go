package replication

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// The pod cache keeps what the ReplicaSet and ReplicationController
// reconciler reads, deletion cost and restart counts (scale-down ranking)
// included.
func TestTransformKeepsWhatTheReconcilerReads(t *testing.T) {
	p := podfixture.Realistic(3)
	now := metav1.Now()
	p.DeletionTimestamp = &now
	p.Annotations[pods.DeletionCostAnnotation] = "-5"
	p.Status.ContainerStatuses[0].RestartCount = 4
	always := v1.ContainerRestartPolicyAlways
	p.Spec.InitContainers = []v1.Container{{Name: "proxy", Image: "proxy:1", RestartPolicy: &always}}
	p.Status.InitContainerStatuses = []v1.ContainerStatus{{Name: "proxy", RestartCount: 2, Image: "proxy:1"}}
	fields := append(podfixture.Owned,
		podfixture.Field{Name: "deletion cost", Get: func(p *v1.Pod) any { return p.Annotations[pods.DeletionCostAnnotation] }},
		podfixture.Field{Name: "restart count", Get: func(p *v1.Pod) any { return p.Status.ContainerStatuses[0].RestartCount }},
		podfixture.Field{Name: "sidecar restart count", Get: func(p *v1.Pod) any { return p.Status.InitContainerStatuses[0].RestartCount }},
	)
	podfixture.Keeps(t, Transform, p, fields...)
}
