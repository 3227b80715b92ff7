package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// The ttl controller's job (kube-controller-manager's ttl-controller):
// every node carries TTLAnnotation, how many seconds it may reuse the
// ConfigMaps and Secrets it read for pods' volumes, growing with the
// cluster so that a large one is not asked for every object on every sync
// of every node. The agent honours it.
const TTLAnnotation = "node.alpha.kubernetes.io/ttl"

// ttlSteps are upstream's cluster-size steps. They overlap, so a cluster
// on a boundary does not flap: the step moves up only above its max and
// down only below its min.
var ttlSteps = []struct{ min, max, seconds int }{
	{0, 100, 0},
	{90, 500, 15},
	{450, 1000, 30},
	{900, 2000, 60},
	{1800, math.MaxInt32, 300},
}

// nextTTLStep is the step for a cluster of n nodes, coming from step.
func nextTTLStep(step, n int) int {
	for step+1 < len(ttlSteps) && n > ttlSteps[step].max {
		step++
	}
	for step > 0 && n < ttlSteps[step].min {
		step--
	}
	return step
}

// syncTTL moves the size step with the node count (queueing every node
// when it moves) and gives n the step's TTL annotation.
func (c *controller) syncTTL(ctx context.Context, n *corev1.Node) error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	c.mu.Lock()
	prev := c.ttlStep
	c.ttlStep = nextTTLStep(prev, len(nodes))
	want := strconv.Itoa(ttlSteps[c.ttlStep].seconds)
	c.mu.Unlock()
	if c.ttlStep != prev {
		c.log.Info("node TTL changed with the cluster's size", "nodes", len(nodes), "ttl_seconds", want)
		for _, o := range nodes {
			c.queue.Add(o.Name)
		}
	}
	if n.Annotations[TTLAnnotation] == want {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{TTLAnnotation: want}}})
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("setting node %s's %s annotation: %w", n.Name, TTLAnnotation, err)
	}
	return nil
}
