package placement

import (
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// lostLocalVolume rejects a pod whose claim is bound to a local volume
// that no node of the cluster can reach, because the node holding its data
// was deleted. The node filter would only say "volume node affinity
// conflict" on every node, on every attempt, forever; this names the node
// and the way out, in the pod's FailedScheduling event. A volume some node
// matches (even a NotReady one) is left to the filters.
func (c *cycle) lostLocalVolume(pvc *v1.PersistentVolumeClaim, pv *v1.PersistentVolume, sel *nodeaffinity.NodeSelector) Status {
	if pv.Spec.Local == nil {
		return Status{}
	}
	for _, n := range c.allNodes {
		if n.Node != nil && sel.Match(&v1.Node{ObjectMeta: metav1.ObjectMeta{Labels: n.Node.Labels}}) {
			return Status{}
		}
	}
	where := "whose node affinity matches no node in the cluster"
	lost := "the data on its node is lost"
	if node := volumeNode(pv); node != "" {
		where = fmt.Sprintf("on node %q, which is no longer in the cluster", node)
		lost = fmt.Sprintf("the data on node %q is lost", node)
	}
	return rejectHard(FilterVolumeBinding, fmt.Sprintf(
		"persistentvolumeclaim %q is bound to local volume %q %s: the pod cannot run anywhere else while it uses this claim. "+
			"If the node is gone for good, delete the claim and then the pod: a StatefulSet creates both again and the new claim gets a volume on another node (%s)",
		pvc.Name, pv.Name, where, lost))
}

// volumeNode is the node a local volume lives on: the local-path
// provisioner's annotation, or the one hostname its node affinity allows.
func volumeNode(pv *v1.PersistentVolume) string {
	if node := pv.Annotations[localstorage.NodeAnnotation]; node != "" {
		return node
	}
	na := pv.Spec.NodeAffinity
	if na == nil || na.Required == nil || len(na.Required.NodeSelectorTerms) != 1 {
		return ""
	}
	exprs := na.Required.NodeSelectorTerms[0].MatchExpressions
	if len(exprs) != 1 || exprs[0].Key != v1.LabelHostname || exprs[0].Operator != v1.NodeSelectorOpIn || len(exprs[0].Values) != 1 {
		return ""
	}
	return exprs[0].Values[0]
}
