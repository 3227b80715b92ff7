package replicationcontroller

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestReplicationControllerAsReplicaSetAndBack(t *testing.T) {
	three := int32(3)
	rc := &v1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "ns", UID: "u", ResourceVersion: "7", Generation: 2},
		Spec: v1.ReplicationControllerSpec{
			Replicas:        &three,
			MinReadySeconds: 5,
			Selector:        map[string]string{"app": "nginx"},
			Template:        &v1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}}},
		},
		Status: v1.ReplicationControllerStatus{
			Replicas: 3, FullyLabeledReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: 2,
			Conditions: []v1.ReplicationControllerCondition{{Type: v1.ReplicationControllerReplicaFailure, Status: v1.ConditionTrue, Reason: "FailedCreate", Message: "quota"}},
		},
	}
	rs := toReplicaSet(rc)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set{"app": "nginx", "x": "y"}) || sel.Matches(labels.Set{"app": "other"}) {
		t.Errorf("selector %v (%v) does not select as the map selector does", sel, err)
	}
	if *rs.Spec.Replicas != 3 || rs.Spec.MinReadySeconds != 5 || rs.ResourceVersion != "7" || rs.Status.Conditions[0].Reason != "FailedCreate" {
		t.Errorf("view %+v", rs)
	}
	back := fromReplicaSet(rs)
	if !equality.Semantic.DeepEqual(back, rc) {
		t.Errorf("round trip changed the object:\n got %+v\nwant %+v", back, rc)
	}
	if nothing := toReplicaSet(&v1.ReplicationController{}); nothing.Spec.Selector != nil {
		t.Errorf("a nil map selector must select nothing, got %v", nothing.Spec.Selector)
	}
}
