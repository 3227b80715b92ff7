package disruption

import (
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
)

// podEvents queues the budgets selecting a pod whenever something the
// status depends on changes (labels, readiness, deletion, controller), and
// the pod itself when it carries a DisruptionTarget condition that may
// turn stale.
func (c *controller) podEvents() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*v1.Pod)
			c.enqueueBudgetsOf(p)
			c.enqueueIfStale(p)
		},
		UpdateFunc: func(oldObj, newObj any) {
			old, cur := oldObj.(*v1.Pod), newObj.(*v1.Pod)
			if counts(old) != counts(cur) || !reflect.DeepEqual(old.Labels, cur.Labels) ||
				!reflect.DeepEqual(old.OwnerReferences, cur.OwnerReferences) {
				if !reflect.DeepEqual(old.Labels, cur.Labels) {
					c.enqueueBudgetsOf(old)
				}
				c.enqueueBudgetsOf(cur)
			}
			c.enqueueIfStale(cur)
		},
		DeleteFunc: func(obj any) {
			if p, ok := tombstone.Object[*v1.Pod](obj); ok {
				c.enqueueBudgetsOf(p)
			}
		},
	}
}

// podCount is what a budget's status reads of a pod besides its labels
// and controller.
type podCount struct {
	ready, deleting bool
	phase           v1.PodPhase
}

func counts(p *v1.Pod) podCount {
	return podCount{ready: pods.IsReady(p), deleting: p.DeletionTimestamp != nil, phase: p.Status.Phase}
}

// budgetsOf returns the cached budgets of p's namespace whose selector
// matches p.
func (c *controller) budgetsOf(p *v1.Pod) []*policyv1.PodDisruptionBudget {
	objs, _ := c.pdbs.ByIndex(cache.NamespaceIndex, p.Namespace)
	var out []*policyv1.PodDisruptionBudget
	for _, o := range objs {
		pdb, ok := o.(*policyv1.PodDisruptionBudget)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, pdb)
		}
	}
	return out
}

// enqueueBudgetsOf queues every budget selecting p. Upstream queues only
// one of several (and says so in a MultiplePodDisruptionBudgets event on
// the pod, as here); every one of them counts the pod, so all are synced.
func (c *controller) enqueueBudgetsOf(p *v1.Pod) {
	pdbs := c.budgetsOf(p)
	if len(pdbs) > 1 {
		msg := fmt.Sprintf("Pod %q/%q matches multiple PodDisruptionBudgets.  Chose %q arbitrarily.", p.Namespace, p.Name, pdbs[0].Name)
		c.events.Event(p, v1.EventTypeWarning, "MultiplePodDisruptionBudgets", msg)
	}
	for _, pdb := range pdbs {
		c.queue.Add(pdbKey(pdb))
	}
}

// controllerEvents queues, when a controller appears, goes, is scaled or
// changes owner, the budgets whose selector matches its pod template's
// labels: an expected count taken from controller scales depends on it.
func (c *controller) controllerEvents() cache.ResourceEventHandlerFuncs {
	enqueue := func(obj any) {
		if o, ok := tombstone.Object[metav1.Object](obj); ok {
			c.enqueueBudgetsSelecting(o.GetNamespace(), templateLabels(o))
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(metav1.Object)
			cur, okCur := newObj.(metav1.Object)
			if okOld && okCur && (scaleOf(old) != scaleOf(cur) ||
				!reflect.DeepEqual(metav1.GetControllerOfNoCopy(old), metav1.GetControllerOfNoCopy(cur))) {
				enqueue(newObj)
			}
		},
		DeleteFunc: enqueue,
	}
}

func (c *controller) enqueueBudgetsSelecting(namespace string, podLabels map[string]string) {
	if podLabels == nil {
		return
	}
	objs, _ := c.pdbs.ByIndex(cache.NamespaceIndex, namespace)
	for _, o := range objs {
		pdb, ok := o.(*policyv1.PodDisruptionBudget)
		if !ok {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(podLabels)) {
			c.queue.Add(pdbKey(pdb))
		}
	}
}

// templateLabels returns the labels a controller gives its pods.
func templateLabels(o metav1.Object) map[string]string {
	switch o := o.(type) {
	case *v1.ReplicationController:
		if o.Spec.Template != nil {
			return o.Spec.Template.Labels
		}
	case *appsv1.ReplicaSet:
		return o.Spec.Template.Labels
	case *appsv1.Deployment:
		return o.Spec.Template.Labels
	case *appsv1.StatefulSet:
		return o.Spec.Template.Labels
	}
	return nil
}

// scaleOf returns a controller's spec.replicas.
func scaleOf(o metav1.Object) int32 {
	switch o := o.(type) {
	case *v1.ReplicationController:
		return replicas(o.Spec.Replicas)
	case *appsv1.ReplicaSet:
		return replicas(o.Spec.Replicas)
	case *appsv1.Deployment:
		return replicas(o.Spec.Replicas)
	case *appsv1.StatefulSet:
		return replicas(o.Spec.Replicas)
	}
	return 0
}
