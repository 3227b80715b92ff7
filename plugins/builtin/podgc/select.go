package podgc

import (
	"context"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// isTerminated is upstream's test: any phase but Pending, Running and
// Unknown.
func isTerminated(p *v1.Pod) bool {
	switch p.Status.Phase {
	case v1.PodPending, v1.PodRunning, v1.PodUnknown:
		return false
	}
	return true
}

// isEvicted reports whether the kubelet failed p by eviction.
func isEvicted(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodFailed && p.Status.Reason == "Evicted"
}

// byEvictionAndAge orders pods for deletion: evicted ones first (they
// matter least to their controllers), then oldest first, then by name.
func byEvictionAndAge(a, b *v1.Pod) int {
	if ea, eb := isEvicted(a), isEvicted(b); ea != eb {
		if ea {
			return -1
		}
		return 1
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	}
	return strings.Compare(a.Name, b.Name)
}

// terminatedBeyondThreshold returns the finished pods beyond the
// threshold, in deletion order.
func (c *controller) terminatedBeyondThreshold(ps []*v1.Pod) []*v1.Pod {
	var done []*v1.Pod
	for _, p := range ps {
		if isTerminated(p) {
			done = append(done, p)
		}
	}
	if len(done) <= c.threshold {
		return nil
	}
	slices.SortFunc(done, byEvictionAndAge)
	return done[:len(done)-c.threshold]
}

// terminatingOutOfService returns the terminating pods on nodes that are
// not Ready and carry the out-of-service taint, in deletion order.
func (c *controller) terminatingOutOfService(ps []*v1.Pod) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range ps {
		if p.DeletionTimestamp == nil || p.Spec.NodeName == "" {
			continue
		}
		obj, ok, _ := c.nodes.GetByKey(p.Spec.NodeName)
		if !ok {
			continue // a missing node is the orphan check's business
		}
		n := obj.(*v1.Node)
		if !isReady(n) && slices.ContainsFunc(n.Spec.Taints, func(t v1.Taint) bool { return t.Key == v1.TaintNodeOutOfService }) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, byEvictionAndAge)
	return out
}

func isReady(n *v1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// orphaned returns the pods bound to nodes that are gone. A node missing
// from the cache is quarantined first: only once it has been missing for
// the quarantine period is it read from the API server, and only a
// NotFound there makes its pods orphans. A node still missing after that
// read starts a new quarantine, as upstream.
func (c *controller) orphaned(ctx context.Context, ps []*v1.Pod) []*v1.Pod {
	now := c.clock.Now()
	for _, p := range ps {
		if p.Spec.NodeName == "" {
			continue
		}
		if _, ok, _ := c.nodes.GetByKey(p.Spec.NodeName); !ok {
			if _, seen := c.missingSince[p.Spec.NodeName]; !seen {
				c.missingSince[p.Spec.NodeName] = now
			}
		}
	}
	gone := map[string]bool{}
	for name, since := range c.missingSince {
		if now.Sub(since) < quarantine {
			continue
		}
		delete(c.missingSince, name)
		if _, ok, _ := c.nodes.GetByKey(name); ok {
			continue
		}
		_, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			gone[name] = true
		case err != nil:
			c.logger.Warn("reading a node missing from the cache failed; checking again later", "node", name, "error", err)
		}
	}
	var out []*v1.Pod
	for _, p := range ps {
		if gone[p.Spec.NodeName] {
			out = append(out, p)
		}
	}
	return out
}

// unscheduledTerminating returns the terminating pods bound to no node:
// no kubelet will ever finish them.
func unscheduledTerminating(ps []*v1.Pod) []*v1.Pod {
	var out []*v1.Pod
	for _, p := range ps {
		if p.DeletionTimestamp != nil && p.Spec.NodeName == "" {
			out = append(out, p)
		}
	}
	return out
}
