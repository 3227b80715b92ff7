package resourcequota

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/builtin/internal/podfixture"
)

// The pod cache keeps what the pod evaluator and its scopes read.
func TestTransformKeepsWhatTheEvaluatorReads(t *testing.T) {
	p := podfixture.Realistic(3)
	now := metav1.Now()
	grace := int64(30)
	deadline := int64(600)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	p.Spec.ActiveDeadlineSeconds, p.Spec.PriorityClassName = &deadline, "high"
	p.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceMemory: resource.MustParse("256Mi")}
	p.Spec.Affinity = &v1.Affinity{PodAffinity: &v1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []v1.PodAffinityTerm{
		{TopologyKey: "zone", NamespaceSelector: &metav1.LabelSelector{}}}}}
	f := func(name string, get func(*v1.Pod) any) podfixture.Field {
		return podfixture.Field{Name: name, Get: get}
	}
	podfixture.Keeps(t, Transform, p,
		f("namespace", func(p *v1.Pod) any { return p.Namespace }),
		f("name", func(p *v1.Pod) any { return p.Name }),
		f("deletionTimestamp", func(p *v1.Pod) any { return p.DeletionTimestamp }),
		f("deletionGracePeriodSeconds", func(p *v1.Pod) any { return p.DeletionGracePeriodSeconds }),
		f("phase", func(p *v1.Pod) any { return p.Status.Phase }),
		f("activeDeadlineSeconds", func(p *v1.Pod) any { return p.Spec.ActiveDeadlineSeconds }),
		f("priorityClassName", func(p *v1.Pod) any { return p.Spec.PriorityClassName }),
		f("container resources", func(p *v1.Pod) any { return p.Spec.Containers[0].Resources }),
		f("pod affinity", func(p *v1.Pod) any { return p.Spec.Affinity.PodAffinity }),
	)
}
