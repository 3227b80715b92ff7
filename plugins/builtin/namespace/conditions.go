package namespace

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// The five conditions a terminating namespace reports, in upstream's order,
// with what each says when nothing is wrong.
var conditionOK = []struct {
	t               corev1.NamespaceConditionType
	reason, message string
}{
	{corev1.NamespaceDeletionDiscoveryFailure, "ResourcesDiscovered", "All resources successfully discovered"},
	{corev1.NamespaceDeletionGVParsingFailure, "ParsedGroupVersions", "All legacy kube types successfully parsed"},
	{corev1.NamespaceDeletionContentFailure, "ContentDeleted", "All content successfully deleted, may be waiting on finalization"},
	{corev1.NamespaceContentRemaining, "ContentRemoved", "All content successfully removed"},
	{corev1.NamespaceFinalizersRemaining, "ContentHasNoFinalizers", "All content-preserving finalizers finished"},
}

// conditions collects the problems of one deletion pass; every condition
// not reported as a problem is reported as fine.
type conditions struct {
	failed        []corev1.NamespaceCondition
	deleteFailure []string
}

func (c *conditions) add(t corev1.NamespaceConditionType, reason, message string) {
	c.failed = append(c.failed, corev1.NamespaceCondition{Type: t, Status: corev1.ConditionTrue, Reason: reason, Message: message})
}

func (c *conditions) discoveryFailed(err error) {
	msg := err.Error()
	var gerr *discovery.ErrGroupDiscoveryFailed
	if errors.As(err, &gerr) {
		msg = fmt.Sprintf("Discovery failed for some groups, %d failing: %v", len(gerr.Groups), err)
	}
	c.add(corev1.NamespaceDeletionDiscoveryFailure, "DiscoveryFailed", msg)
}

func (c *conditions) groupVersionFailed(err error) {
	c.add(corev1.NamespaceDeletionGVParsingFailure, "GroupVersionParsingFailed", err.Error())
}

func (c *conditions) deleteFailed(err error) {
	c.deleteFailure = append(c.deleteFailure, err.Error())
}

// contentLeft reports the objects left after a full pass, per resource and
// per finalizer holding them.
func (c *conditions) contentLeft(left map[schema.GroupVersionResource]remaining) {
	var perResource []string
	perFinalizer := map[string]int{}
	for gvr, r := range left {
		perResource = append(perResource, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, r.count))
		for f, n := range r.finalizers {
			perFinalizer[f] += n
		}
	}
	if len(perResource) > 0 {
		slices.Sort(perResource)
		c.add(corev1.NamespaceContentRemaining, "SomeResourcesRemain",
			"Some resources are remaining: "+strings.Join(perResource, ", "))
	}
	if len(perFinalizer) > 0 {
		var held []string
		for _, f := range slices.Sorted(maps.Keys(perFinalizer)) {
			held = append(held, fmt.Sprintf("%s in %d resource instances", f, perFinalizer[f]))
		}
		c.add(corev1.NamespaceFinalizersRemaining, "SomeFinalizersRemain",
			"Some content in the namespace has finalizers remaining: "+strings.Join(held, ", "))
	}
}

// apply writes the five conditions into status and reports whether any
// changed. A condition's transition time moves only when its status does.
func (c *conditions) apply(status *corev1.NamespaceStatus, now time.Time) bool {
	if len(c.deleteFailure) > 0 {
		msgs := slices.Sorted(slices.Values(c.deleteFailure))
		c.add(corev1.NamespaceDeletionContentFailure, "ContentDeletionFailed",
			fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(msgs), strings.Join(msgs, ", ")))
	}
	changed := false
	for _, ok := range conditionOK {
		want := corev1.NamespaceCondition{Type: ok.t, Status: corev1.ConditionFalse, Reason: ok.reason, Message: ok.message}
		if i := slices.IndexFunc(c.failed, func(f corev1.NamespaceCondition) bool { return f.Type == ok.t }); i >= 0 {
			want = c.failed[i]
		}
		i := slices.IndexFunc(status.Conditions, func(h corev1.NamespaceCondition) bool { return h.Type == ok.t })
		if i < 0 {
			want.LastTransitionTime = metav1.NewTime(now)
			status.Conditions = append(status.Conditions, want)
			changed = true
			continue
		}
		have := &status.Conditions[i]
		if have.Status == want.Status && have.Reason == want.Reason && have.Message == want.Message {
			continue
		}
		if have.Status != want.Status {
			have.LastTransitionTime = metav1.NewTime(now)
		}
		have.Status, have.Reason, have.Message = want.Status, want.Reason, want.Message
		changed = true
	}
	return changed
}
