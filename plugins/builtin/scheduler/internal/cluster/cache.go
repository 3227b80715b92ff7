// Package cluster holds the scheduler's model of the cluster: every node
// with the running total of what its pods request, the pods placed on each
// (bound, or assumed while their binding is in flight), and the derived
// data the placement filters read (taints implied by node conditions, host
// ports in use, pods carrying affinity terms).
//
// A Cache is owned by one goroutine, the scheduling loop, which applies
// informer events between two scheduling cycles: the state a cycle reads is
// therefore a consistent snapshot without being copied. Filters may read it
// from several goroutines in parallel while the loop waits for them.
package cluster

import (
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Cache is the cluster model; see the package comment for who may touch it.
type Cache struct {
	nodes map[string]*NodeInfo
	// order lists the nodes that exist, interleaved by zone so that a scan
	// of the first few percent samples every zone (see rebuildOrder).
	order      []*NodeInfo
	orderStale bool
	pods       map[types.UID]*podState
	generation int64
	// freeSlots are the slots of removed nodes, reused before new ones.
	freeSlots []int
	nextSlot  int
}

type podState struct {
	info    *PodInfo
	node    string
	assumed bool
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{nodes: map[string]*NodeInfo{}, pods: map[types.UID]*podState{}}
}

func (c *Cache) touch(n *NodeInfo) {
	c.generation++
	n.Generation = c.generation
}

// nodeInfo returns the entry for name, creating an empty one (without a
// Node) for pods that arrive before their node.
func (c *Cache) nodeInfo(name string) *NodeInfo {
	n, ok := c.nodes[name]
	if !ok {
		slot := c.nextSlot
		if k := len(c.freeSlots); k > 0 {
			slot, c.freeSlots = c.freeSlots[k-1], c.freeSlots[:k-1]
		} else {
			c.nextSlot++
		}
		n = newNodeInfo(name, slot)
		c.touch(n)
		c.nodes[name] = n
	}
	return n
}

// deleteNode drops the entry of a node and frees its slot.
func (c *Cache) deleteNode(n *NodeInfo) {
	delete(c.nodes, n.Name)
	c.freeSlots = append(c.freeSlots, n.Slot)
}

// SetNode adds or updates a node.
func (c *Cache) SetNode(node *v1.Node) {
	n := c.nodeInfo(node.Name)
	if n.Node == nil || zoneOf(n.Node) != zoneOf(node) {
		c.orderStale = true
	}
	n.setNode(node)
	c.touch(n)
}

// RemoveNode removes a node. Pods still bound to it keep their accounting
// until they are deleted, as the node may come back.
func (c *Cache) RemoveNode(name string) {
	n, ok := c.nodes[name]
	if !ok {
		return
	}
	c.orderStale = true
	if len(n.Pods) == 0 {
		c.deleteNode(n)
		return
	}
	n.Node = nil
	c.touch(n)
}

// Node returns the node called name, or nil if it does not exist.
func (c *Cache) Node(name string) *NodeInfo {
	if n := c.nodes[name]; n != nil && n.Node != nil {
		return n
	}
	return nil
}

// Nodes returns every existing node in scan order. The slice is shared:
// callers must not modify it, and it is valid until the next change.
func (c *Cache) Nodes() []*NodeInfo {
	if c.orderStale {
		c.rebuildOrder()
	}
	return c.order
}

// Generation is the cache's change counter: it grows with every change.
func (c *Cache) Generation() int64 { return c.generation }

// SetPod records a bound pod (spec.nodeName set) from the informer, adding
// it or replacing the previous version. A pod assumed by this scheduler is
// confirmed: the API server's version replaces the assumed one.
func (c *Cache) SetPod(pod *v1.Pod) {
	ps, ok := c.pods[pod.UID]
	if ok {
		if old := c.nodes[ps.node]; old != nil {
			old.RemovePod(pod.UID)
			c.touch(old)
			c.dropIfGone(old)
		}
	}
	pi := NewPodInfo(pod)
	n := c.nodeInfo(pod.Spec.NodeName)
	n.AddPod(pi)
	c.touch(n)
	c.pods[pod.UID] = &podState{info: pi, node: pod.Spec.NodeName}
}

// RemovePod forgets a pod, bound or assumed, and reports the node it was
// on ("" if it was not in the cache).
func (c *Cache) RemovePod(uid types.UID) string {
	ps, ok := c.pods[uid]
	if !ok {
		return ""
	}
	delete(c.pods, uid)
	if n := c.nodes[ps.node]; n != nil {
		n.RemovePod(uid)
		c.touch(n)
		c.dropIfGone(n)
	}
	return ps.node
}

// dropIfGone deletes the entry of a removed node once its last pod is gone.
func (c *Cache) dropIfGone(n *NodeInfo) {
	if n.Node == nil && len(n.Pods) == 0 {
		c.deleteNode(n)
	}
}

// AssumePod accounts pi on node before its binding is observed, so the
// next pods see its requests. It returns the assumed PodInfo, whose pod is
// a shallow copy with spec.nodeName set.
func (c *Cache) AssumePod(pi *PodInfo, node string) (*PodInfo, error) {
	if _, ok := c.pods[pi.Pod.UID]; ok {
		return nil, fmt.Errorf("pod %s (uid %s) is already in the scheduler cache", pi.Key(), pi.Pod.UID)
	}
	pod := *pi.Pod
	pod.Spec.NodeName = node
	assumed := *pi
	assumed.Pod = &pod
	n := c.nodeInfo(node)
	n.AddPod(&assumed)
	c.touch(n)
	c.pods[pod.UID] = &podState{info: &assumed, node: node, assumed: true}
	return &assumed, nil
}

// ForgetPod removes an assumed pod whose binding failed. A pod the
// informer already confirmed stays.
func (c *Cache) ForgetPod(uid types.UID) {
	if ps, ok := c.pods[uid]; ok && ps.assumed {
		c.RemovePod(uid)
	}
}

// IsAssumed reports whether uid is assumed and not yet confirmed.
func (c *Cache) IsAssumed(uid types.UID) bool {
	ps, ok := c.pods[uid]
	return ok && ps.assumed
}

// PodNode returns the node the pod is placed on in the cache, if any.
func (c *Cache) PodNode(uid types.UID) (string, bool) {
	ps, ok := c.pods[uid]
	if !ok {
		return "", false
	}
	return ps.node, true
}

// PodCount is the number of pods in the cache (bound and assumed).
func (c *Cache) PodCount() int { return len(c.pods) }

// zoneOf names the failure domain of a node: region and zone, from the GA
// labels or the beta ones older nodes carry.
func zoneOf(node *v1.Node) string {
	l := node.Labels
	region, zone := l[v1.LabelTopologyRegion], l[v1.LabelTopologyZone]
	if region == "" {
		region = l[v1.LabelFailureDomainBetaRegion]
	}
	if zone == "" {
		zone = l[v1.LabelFailureDomainBetaZone]
	}
	if region == "" && zone == "" {
		return ""
	}
	return region + "\x00" + zone
}

// rebuildOrder lays the nodes out zone by zone in turn (first node of each
// zone, then the second of each, ...), zones and nodes in name order, so
// that sampling part of the list spreads over every zone.
func (c *Cache) rebuildOrder() {
	byZone := map[string][]*NodeInfo{}
	for _, n := range c.nodes {
		if n.Node == nil {
			continue
		}
		z := zoneOf(n.Node)
		byZone[z] = append(byZone[z], n)
	}
	zones := make([]string, 0, len(byZone))
	longest := 0
	for z, ns := range byZone {
		zones = append(zones, z)
		slices.SortFunc(ns, func(a, b *NodeInfo) int { return strings.Compare(a.Name, b.Name) })
		longest = max(longest, len(ns))
	}
	slices.Sort(zones)
	order := make([]*NodeInfo, 0, len(c.nodes))
	for i := 0; i < longest; i++ {
		for _, z := range zones {
			if ns := byZone[z]; i < len(ns) {
				order = append(order, ns[i])
			}
		}
	}
	c.order = order
	c.orderStale = false
}
