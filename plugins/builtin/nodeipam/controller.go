package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// allocator is the controller's state: one cidrSet per cluster range and
// which node holds which ranges. Only the single worker touches it.
type allocator struct {
	ranges ranges
	sets   []*cidrSet
	owners map[string][]netip.Prefix // node name -> its ranges, podCIDRs order
	byCIDR map[netip.Prefix]string   // range -> node name
}

func newAllocator(r ranges) (*allocator, error) {
	a := &allocator{ranges: r, owners: map[string][]netip.Prefix{}, byCIDR: map[netip.Prefix]string{}}
	for i, p := range r.cluster {
		s, err := newCIDRSet(p, r.masks[i])
		if err != nil {
			return nil, err
		}
		a.sets = append(a.sets, s)
	}
	a.reserve()
	return a, nil
}

// reserve keeps the service range out of the pod ranges.
func (a *allocator) reserve() {
	for _, p := range a.ranges.reserved {
		for _, s := range a.sets {
			s.occupy(p)
		}
	}
}

// occupy records that node holds cidrs (its podCIDRs) and returns the
// ranges another node already held, or that lie outside every cluster
// range: those are the operator's to sort out.
func (a *allocator) occupy(node string, cidrs []netip.Prefix) (conflicts, foreign []netip.Prefix) {
	if slices.Equal(a.owners[node], cidrs) {
		return nil, nil
	}
	a.release(node)
	for _, p := range cidrs {
		if other, ok := a.byCIDR[p]; ok && other != node {
			conflicts = append(conflicts, p)
			continue
		}
		inRange := false
		for _, s := range a.sets {
			inRange = s.occupy(p) || inRange
		}
		if !inRange {
			foreign = append(foreign, p)
		}
		a.byCIDR[p] = node
	}
	a.owners[node] = cidrs
	return conflicts, foreign
}

// release frees whatever node holds and reports whether it held anything.
func (a *allocator) release(node string) bool {
	held, ok := a.owners[node]
	if !ok {
		return false
	}
	for _, p := range held {
		if a.byCIDR[p] != node {
			continue // a conflicting range still in use by its first holder
		}
		delete(a.byCIDR, p)
		for _, s := range a.sets {
			s.release(p)
		}
	}
	delete(a.owners, node)
	a.reserve()
	return true
}

// allocate takes one free range of each cluster range, or none.
func (a *allocator) allocate() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range a.sets {
		p, err := s.allocate()
		if err != nil {
			for i, q := range out {
				a.sets[i].release(q)
			}
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// giveBack returns ranges allocate handed out but that were never written.
func (a *allocator) giveBack(cidrs []netip.Prefix) {
	for i, p := range cidrs {
		a.sets[i].release(p)
	}
	a.reserve()
}

// controller gives every Node its podCIDRs.
type controller struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	alloc    *allocator
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	log      *slog.Logger
}

// rebuild occupies the ranges every existing Node holds, before anything is
// allocated: the allocation map lives only in this process, and the Nodes
// are its truth.
func (c *controller) rebuild() error {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	for _, n := range nodes {
		if cidrs := podCIDRs(n); len(cidrs) > 0 {
			c.occupy(n, cidrs)
		}
		c.queue.Add(n.Name)
	}
	c.log.Info("rebuilt the pod CIDR map from the nodes", "nodes", len(nodes), "cluster_cidr", c.alloc.ranges.cluster)
	return nil
}

// run allocates until ctx ends, with one worker: the allocator is not
// shared between goroutines.
func (c *controller) run(ctx context.Context) {
	sdk.RunWorkers(ctx, c.queue, 1, func(ctx context.Context, name string) (sdk.Result, error) {
		return sdk.Result{}, c.sync(ctx, name)
	}, c.log)
}

// sync makes one Node hold exactly its ranges in the map, allocating them
// first if it has none. It is level-triggered: a missed event is made up by
// the next sync of the same name.
func (c *controller) sync(ctx context.Context, name string) error {
	n, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		if c.alloc.release(name) {
			c.log.Info("released the pod CIDRs of a deleted node", "node", name)
			c.requeueWaiting()
		}
		return nil
	}
	if err != nil {
		return err
	}
	if cidrs := podCIDRs(n); len(cidrs) > 0 {
		c.occupy(n, cidrs)
		return nil
	}
	if n.DeletionTimestamp != nil {
		return nil
	}
	c.alloc.release(name) // a previous Node of the same name
	cidrs, err := c.alloc.allocate()
	if err != nil {
		c.recorder.Eventf(nodeRef(n), corev1.EventTypeNormal, "CIDRNotAvailable", "Node %s status is now: CIDRNotAvailable", n.Name)
		return fmt.Errorf("node %s: %w", name, err)
	}
	if err := c.write(ctx, n, cidrs); err != nil {
		c.alloc.giveBack(cidrs)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // the cache was behind: the next event brings the truth
		}
		c.recorder.Eventf(nodeRef(n), corev1.EventTypeNormal, "CIDRAssignmentFailed", "Node %s status is now: CIDRAssignmentFailed", n.Name)
		return err
	}
	c.alloc.occupy(name, cidrs)
	c.log.Info("set the node's pod CIDRs", "node", name, "pod_cidrs", cidrs)
	return nil
}

func (c *controller) occupy(n *corev1.Node, cidrs []netip.Prefix) {
	conflicts, foreign := c.alloc.occupy(n.Name, cidrs)
	if len(conflicts) > 0 {
		c.log.Warn("node's pod CIDRs are another node's too; fix one of the two Nodes", "node", n.Name, "cidrs", conflicts)
		c.recorder.Eventf(nodeRef(n), corev1.EventTypeWarning, "CIDRConflict", "Node %s has pod CIDRs %v that another node already holds", n.Name, conflicts)
	}
	if len(foreign) > 0 {
		c.log.Warn("node's pod CIDRs lie outside the cluster CIDR", "node", n.Name, "cidrs", foreign, "cluster_cidr", c.alloc.ranges.cluster)
	}
}

// write sets the Node's podCIDRs, only if the Node is still the version
// the decision was made on (the resourceVersion in the patch is a
// precondition): a range is written to one Node only.
func (c *controller) write(ctx context.Context, n *corev1.Node, cidrs []netip.Prefix) error {
	strs := make([]string, len(cidrs))
	for i, p := range cidrs {
		strs[i] = fmt.Sprintf("%q", p.String())
	}
	patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"podCIDR":%s,"podCIDRs":[%s]}}`,
		n.ResourceVersion, strs[0], strings.Join(strs, ","))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := c.client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("setting podCIDRs %v on node %s: %w", cidrs, n.Name, err)
	}
	return nil
}

// requeueWaiting retries the Nodes still without ranges: one was just freed.
func (c *controller) requeueWaiting() {
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return
	}
	for _, n := range nodes {
		if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR == "" {
			c.queue.Add(n.Name)
		}
	}
}

// podCIDRs are the Node's ranges; unparseable ones are left out.
func podCIDRs(n *corev1.Node) []netip.Prefix {
	strs := n.Spec.PodCIDRs
	if len(strs) == 0 && n.Spec.PodCIDR != "" {
		strs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, s := range strs {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

func nodeRef(n *corev1.Node) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}
}
