package statefulset

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	intstr "k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/plugins/builtin/internal/history"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// Labels every StatefulSet pod carries besides its template's.
const (
	podNameLabel  = appsv1.StatefulSetPodNameLabel
	podIndexLabel = appsv1.PodIndexLabel
)

var ordinalSuffix = regexp.MustCompile(`^(.*)-([0-9]+)$`)

// ordinalOf returns the ordinal of a pod named <set>-<ordinal>, or -1 if
// the pod is not a member of set by name.
func ordinalOf(set *appsv1.StatefulSet, p *v1.Pod) int {
	m := ordinalSuffix.FindStringSubmatch(p.Name)
	if m == nil || m[1] != set.Name {
		return -1
	}
	n, err := strconv.Atoi(m[2])
	if err != nil {
		return -1
	}
	return n
}

func podName(set *appsv1.StatefulSet, ordinal int) string {
	return fmt.Sprintf("%s-%d", set.Name, ordinal)
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicasOf(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

func claimName(tmpl *v1.PersistentVolumeClaim, set *appsv1.StatefulSet, ordinal int) string {
	return tmpl.Name + "-" + podName(set, ordinal)
}

func revisionOf(p *v1.Pod) string { return p.Labels[history.HashLabel] }

// newPod builds the pod of ordinal from template (the set's or an older
// revision's) at revision.
func newPod(set *appsv1.StatefulSet, template *v1.PodTemplateSpec, revision string, ordinal int) *v1.Pod {
	name := podName(set, ordinal)
	p := &v1.Pod{
		ObjectMeta: *template.ObjectMeta.DeepCopy(),
		Spec:       *template.Spec.DeepCopy(),
	}
	p.Name, p.GenerateName, p.Namespace = name, "", set.Namespace
	p.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[podNameLabel] = name
	p.Labels[podIndexLabel] = strconv.Itoa(ordinal)
	p.Labels[history.HashLabel] = revision
	p.Spec.Hostname = name
	p.Spec.Subdomain = set.Spec.ServiceName
	// Each claim template replaces the template's volume of the same name.
	byName := map[string]int{}
	for i, vol := range p.Spec.Volumes {
		byName[vol.Name] = i
	}
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		vol := v1.Volume{Name: t.Name, VolumeSource: v1.VolumeSource{
			PersistentVolumeClaim: &v1.PersistentVolumeClaimVolumeSource{ClaimName: claimName(t, set, ordinal)},
		}}
		if j, ok := byName[t.Name]; ok {
			p.Spec.Volumes[j] = vol
		} else {
			p.Spec.Volumes = append(p.Spec.Volumes, vol)
		}
	}
	return p
}

// newClaim builds the claim of template t for ordinal.
func newClaim(set *appsv1.StatefulSet, t *v1.PersistentVolumeClaim, ordinal int) *v1.PersistentVolumeClaim {
	c := &v1.PersistentVolumeClaim{ObjectMeta: *t.ObjectMeta.DeepCopy(), Spec: *t.Spec.DeepCopy()}
	c.Name, c.Namespace, c.ResourceVersion, c.UID = claimName(t, set, ordinal), set.Namespace, "", ""
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if set.Spec.Selector != nil {
		for k, v := range set.Spec.Selector.MatchLabels {
			c.Labels[k] = v
		}
	}
	return c
}

// retention returns the set's claim retention policy with defaults (Retain).
func retention(set *appsv1.StatefulSet) (whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) {
	whenDeleted, whenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		if p.WhenDeleted != "" {
			whenDeleted = p.WhenDeleted
		}
		if p.WhenScaled != "" {
			whenScaled = p.WhenScaled
		}
	}
	return whenDeleted, whenScaled
}

// wantOwners returns the ownerReferences a claim should carry for the
// retention policy: the set when WhenDeleted=Delete (the garbage collector
// deletes the claim with the set), the pod when WhenScaled=Delete and the
// pod's ordinal is being removed (deleted with the pod). Others' references
// are kept.
func wantOwners(set *appsv1.StatefulSet, claim *v1.PersistentVolumeClaim, pod *v1.Pod, condemned bool) []metav1.OwnerReference {
	whenDeleted, whenScaled := retention(set)
	var refs []metav1.OwnerReference
	for _, r := range claim.OwnerReferences {
		if r.UID != set.UID && (pod == nil || r.UID != pod.UID) {
			refs = append(refs, r)
		}
	}
	if whenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		refs = append(refs, metav1.OwnerReference{APIVersion: kind.GroupVersion().String(), Kind: kind.Kind, Name: set.Name, UID: set.UID})
	}
	if whenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType && condemned && pod != nil {
		refs = append(refs, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID})
	}
	return refs
}

func isCreated(p *v1.Pod) bool { return p.Status.Phase != "" }

func isFailed(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed }

func isSucceeded(p *v1.Pod) bool { return p.Status.Phase == v1.PodSucceeded }

func isTerminating(p *v1.Pod) bool { return p.DeletionTimestamp != nil }

func isRunningAndReady(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodRunning && pods.IsReady(p)
}

func isRunningAndAvailable(p *v1.Pod, minReady int32, now time.Time) bool {
	return p.Status.Phase == v1.PodRunning && pods.IsAvailable(p, minReady, now)
}

// isHealthy is what ordered operations wait for: running, available and
// not being deleted.
func isHealthy(p *v1.Pod, minReady int32, now time.Time) bool {
	return p != nil && isRunningAndAvailable(p, minReady, now) && !isTerminating(p)
}

// maxUnavailable resolves the rolling update's maxUnavailable against the
// replicas (rounded down as upstream, at least 1).
func maxUnavailable(set *appsv1.StatefulSet) int {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if ru == nil || ru.MaxUnavailable == nil {
		return 1
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(ru.MaxUnavailable, intstr.FromInt32(1)), replicasOf(set), false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

func partitionOf(set *appsv1.StatefulSet) int {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && ru != nil && ru.Partition != nil {
		return int(*ru.Partition)
	}
	return 0
}
