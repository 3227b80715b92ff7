package nodelifecycle

import (
	"context"
	"errors"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// sync brings one node's NoSchedule taints, its pods' readiness and its
// taint-based evictions in line with the node as the cache shows it. It is
// level-triggered: it recomputes everything from the node and its pods, so
// a missed event or a restart loses nothing but the cancelled-eviction
// events.
func (c *controller) sync(ctx context.Context, name string) error {
	n, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.forgetNode(name)
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	if add, remove := noScheduleDiff(n); len(add)+len(remove) > 0 {
		taints, _ := swapTaints(n.Spec.Taints, add, remove, metav1.NewTime(c.clock.Now()))
		if err := patchTaints(ctx, c.client, n, taints); err != nil && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		} else if err == nil {
			c.log.Info("node taints changed", "node", name, "added", taintKeys(add), "removed", taintKeys(remove), "reason", "node conditions")
		}
	}
	errs = append(errs, c.syncTTL(ctx, n))
	pods := c.podsOn(name)
	errs = append(errs, c.markPodsNotReady(ctx, n, pods))
	errs = append(errs, c.evictPods(ctx, n, pods))
	return errors.Join(errs...)
}

func (c *controller) podsOn(node string) []*corev1.Pod {
	objs, err := c.pods.ByIndex(podsByNode, node)
	if err != nil {
		return nil
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods
}

// markPodsNotReady marks the pods of a node that is not ready NotReady,
// as upstream does, so Services stop sending them traffic.
func (c *controller) markPodsNotReady(ctx context.Context, n *corev1.Node, pods []*corev1.Pod) error {
	ready := nodehealth.Condition(n, corev1.NodeReady)
	var errs []error
	for _, p := range pods {
		if !staleReady(p, ready) {
			continue
		}
		if err := markNotReady(ctx, c.client, p, metav1.NewTime(c.clock.Now())); err != nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
			continue
		}
		c.podEvents.Event(p, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
		c.log.Info("pod marked not ready: its node is not", "pod", p.Namespace+"/"+p.Name, "node", n.Name)
	}
	return errors.Join(errs...)
}

// evictPods deletes the node's pods whose toleration of its NoExecute
// taints has run out, and queues the node again for the next one due.
func (c *controller) evictPods(ctx context.Context, n *corev1.Node, pods []*corev1.Pod) error {
	taints := noExecute(n.Spec.Taints)
	since := c.taintClock(n.Name, taints)
	now := c.clock.Now()
	var next time.Time
	var errs []error
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		if p.DeletionTimestamp != nil {
			c.unschedule(key, false)
			continue
		}
		at, ok := time.Time{}, false
		if len(taints) > 0 {
			at, ok = evictionTime(p, taints, since)
		}
		switch {
		case !ok:
			c.unschedule(key, true)
		case at.After(now):
			c.schedule(key, n.Name)
			if next.IsZero() || at.Before(next) {
				next = at
			}
		default:
			c.podEvents.Eventf(p, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s", key)
			if err := evict(ctx, c.client, p, metav1.NewTime(now)); err != nil {
				errs = append(errs, err)
				continue
			}
			c.unschedule(key, false)
			c.log.Info("pod evicted: its node's NoExecute taint outlasted its toleration", "pod", key, "node", n.Name, "taints", taintKeys(taints))
		}
	}
	if !next.IsZero() {
		c.queue.AddAfter(n.Name, next.Sub(now))
	}
	return errors.Join(errs...)
}

// taintClock returns when each of the node's NoExecute taints began: its
// timeAdded, or for a taint without one, when this process first saw it.
// It forgets taints the node no longer has.
func (c *controller) taintClock(node string, taints []corev1.Taint) func(corev1.Taint) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := c.firstSeen[node]
	now := c.clock.Now()
	fresh := map[corev1.Taint]time.Time{}
	for _, t := range taints {
		k := corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect}
		if at, ok := seen[k]; ok {
			fresh[k] = at
		} else {
			fresh[k] = now
		}
	}
	if len(fresh) == 0 {
		delete(c.firstSeen, node)
	} else {
		c.firstSeen[node] = fresh
	}
	return func(t corev1.Taint) time.Time {
		return fresh[corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect}]
	}
}

// schedule remembers that the pod's eviction is due later.
func (c *controller) schedule(pod, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.scheduled[pod] = node
}

// unschedule forgets a pending eviction; announce reports the cancellation
// (the taint went away or became tolerated forever) as upstream does.
func (c *controller) unschedule(pod string, announce bool) {
	c.mu.Lock()
	_, was := c.scheduled[pod]
	delete(c.scheduled, pod)
	c.mu.Unlock()
	if was && announce {
		ns, name, _ := strings.Cut(pod, "/")
		ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: ns, Name: name}
		c.podEvents.Eventf(ref, corev1.EventTypeNormal, "TaintManagerEviction", "Cancelling deletion of Pod %s", pod)
	}
}

// forgetNode drops what is remembered about a deleted node.
func (c *controller) forgetNode(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.firstSeen, node)
	for pod, n := range c.scheduled {
		if n == node {
			delete(c.scheduled, pod)
		}
	}
}
