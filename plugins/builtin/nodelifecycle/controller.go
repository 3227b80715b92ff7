package nodelifecycle

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	nodetopology "k8s.io/component-helpers/node/topology"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// taintingPeriod is how often the zones' queues are drained (upstream's
// NodeEvictionPeriod); the zones' rate limiters decide how many go.
const taintingPeriod = 100 * time.Millisecond

// workers process nodes (taints, pod readiness, evictions) in parallel;
// one node is only ever in one worker.
const workers = 4

// podsByNode indexes the pod cache by spec.nodeName.
const podsByNode = "spec.nodeName"

// controller is the node lifecycle controller. Three loops share it: the
// monitor pass (node health, zones, NoExecute decisions), the tainting pass
// (rate-limited NoExecute taints) and the node workers (NoSchedule taints,
// pod readiness, taint-based evictions).
type controller struct {
	cfg    Config
	clock  clock.WithTicker
	client kubernetes.Interface
	nodes  corelisters.NodeLister
	leases coordinationlisters.LeaseNamespaceLister
	pods   cache.Indexer
	log    *slog.Logger
	queue  workqueue.TypedRateLimitingInterface[string]

	nodeEvents record.EventRecorder // as upstream's "node-controller"
	podEvents  record.EventRecorder // as upstream's "taint-eviction-controller"

	// The monitor pass's own state.
	health     *healthTracker
	disruption *disruption
	lastReady  map[string]corev1.ConditionStatus

	tainter *tainter

	mu sync.Mutex
	// firstSeen is when this process first saw each NoExecute taint that
	// has no timeAdded, by node and taint.
	firstSeen map[string]map[corev1.Taint]time.Time
	// scheduled are the pods with an eviction time in the future, and their
	// nodes, so that a cancelled eviction is reported as upstream does.
	scheduled map[string]string
	// ttlStep is the cluster-size step of the nodes' TTL (ttl.go).
	ttlStep int
}

func newController(cfg Config, clk clock.WithTicker, client kubernetes.Interface, log *slog.Logger) *controller {
	return &controller{
		cfg: cfg, clock: clk, client: client, log: log,
		queue:      sdk.NewQueue[string](Name, sdk.WithClock(clk)),
		health:     newHealthTracker(cfg),
		disruption: &disruption{cfg: cfg, states: map[string]zoneState{}},
		lastReady:  map[string]corev1.ConditionStatus{},
		tainter:    newTainter(cfg.NodeEvictionRate),
		firstSeen:  map[string]map[corev1.Taint]time.Time{},
		scheduled:  map[string]string{},
	}
}

// handlers are the informers' event handlers: every change to a node or to
// a pod bound to it queues the node.
func (c *controller) nodeHandler() cache.ResourceEventHandler { return sdk.EnqueueObjects(c.queue) }

func (c *controller) podHandler() cache.ResourceEventHandler {
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			c.queue.Add(p.Spec.NodeName)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue}
}

// run runs the three loops until ctx ends.
func (c *controller) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { c.every(ctx, taintingPeriod, c.taintingPass) })
	wg.Go(func() { c.every(ctx, c.cfg.NodeMonitorPeriod.Duration, c.monitor) })
	sdk.RunWorkers(ctx, c.queue, workers, func(ctx context.Context, name string) (sdk.Result, error) {
		return sdk.Result{}, c.sync(ctx, name)
	}, c.log)
}

// every runs f now and then every period until ctx ends.
func (c *controller) every(ctx context.Context, period time.Duration, f func(context.Context)) {
	t := c.clock.NewTicker(period)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// monitor is one monitor pass: it marks silent Lease nodes Unknown, queues
// not-ready nodes for their NoExecute taint (or swaps or removes taints at
// once), reports nodes that stopped being ready, and updates the zones'
// states and eviction rates.
func (c *controller) monitor(ctx context.Context) {
	now := c.clock.Now()
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		c.log.Warn("node lifecycle: listing nodes", "error", err)
		return
	}
	keep := map[string]bool{}
	zones := map[string][]*corev1.NodeCondition{}
	for i, n := range nodes {
		keep[n.Name] = true
		n = c.checkHealth(ctx, n, now)
		nodes[i] = n
		ready := nodehealth.Condition(n, corev1.NodeReady)
		if _, excluded := n.Labels[labelExcludeDisruption]; !excluded {
			zone := nodetopology.GetZoneKey(n)
			zones[zone] = append(zones[zone], ready)
		}
		c.noticeTransition(n, ready)
	}
	c.health.forget(keep)
	for name := range c.lastReady {
		if !keep[name] {
			delete(c.lastReady, name)
		}
	}
	c.applyDisruption(c.disruption.update(zones), now)
	allFull := c.disruption.allFull()
	for _, n := range nodes {
		zone := nodetopology.GetZoneKey(n)
		if allFull {
			// Every zone down at once is more likely the control plane cut
			// off than every node dead: no node keeps a NoExecute taint.
			c.tainter.remove(zone, n.Name)
			c.setTaints(ctx, n, nil, []corev1.Taint{notReadyNoExecute, unreachableNoExecute}, now, "every zone is fully disrupted")
			continue
		}
		c.processNoExecute(ctx, n, nodehealth.Condition(n, corev1.NodeReady), zone, now)
	}
}

// checkHealth marks a Lease node whose grace period ran out Unknown, and
// returns the node as it now is. Gossip nodes are the raft leader's.
func (c *controller) checkHealth(ctx context.Context, n *corev1.Node, now time.Time) *corev1.Node {
	if nodehealth.IsGossip(n) {
		return n
	}
	lease, err := c.leases.Get(n.Name)
	if err != nil {
		lease = nil
	}
	if !c.health.observe(n, lease, now) || nodehealth.AllUnknown(n) {
		return n
	}
	marked := n.DeepCopy()
	nodehealth.MarkUnknown(marked, metav1.NewTime(now))
	if err := patchConditions(ctx, c.client, marked); err != nil {
		if !apierrors.IsConflict(err) { // the agent posted meanwhile: good news
			c.log.Warn("node lifecycle: marking a silent node Unknown", "node", n.Name, "error", err)
		}
		return n
	}
	c.log.Info("node stopped renewing its Lease and posting status; Ready=Unknown", "node", n.Name, "grace_period", c.cfg.NodeMonitorGracePeriod.Duration)
	return marked
}

// noticeTransition reports a node that stopped being ready, once, and
// queues it so its pods are marked not ready.
func (c *controller) noticeTransition(n *corev1.Node, ready *corev1.NodeCondition) {
	cur := corev1.ConditionUnknown
	if ready != nil {
		cur = ready.Status
	}
	prev, seen := c.lastReady[n.Name]
	c.lastReady[n.Name] = cur
	if seen && prev == corev1.ConditionTrue && cur != corev1.ConditionTrue {
		c.nodeEvents.Eventf(nodeRef(n), corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", n.Name)
		c.queue.Add(n.Name)
	}
}

// processNoExecute follows upstream's taint-based eviction: a ready node
// loses its NoExecute taints at once; a node that changed between not
// ready and unreachable swaps them at once; a newly not-ready node waits in
// its zone's queue, whose rate limits evictions.
func (c *controller) processNoExecute(ctx context.Context, n *corev1.Node, ready *corev1.NodeCondition, zone string, now time.Time) {
	want, opposite := wantedNoExecute(ready)
	switch {
	case want == nil:
		if ready != nil {
			c.tainter.remove(zone, n.Name)
			c.setTaints(ctx, n, nil, []corev1.Taint{notReadyNoExecute, unreachableNoExecute}, now, "node is ready again")
		}
	case hasTaint(n.Spec.Taints, *opposite):
		c.setTaints(ctx, n, []corev1.Taint{*want}, []corev1.Taint{*opposite}, now, "swapped its NoExecute taint")
	case !hasTaint(n.Spec.Taints, *want):
		c.tainter.add(zone, n.Name)
	}
}

// applyDisruption carries out the zones' new states.
func (c *controller) applyDisruption(change disruptionChange, now time.Time) {
	if change.enteredFull {
		c.log.Info("every zone is fully disrupted (no node ready): stopping evictions and removing NoExecute taints; the control plane may be cut off")
	}
	if change.exitedFull {
		c.log.Info("some nodes are ready again: leaving full disruption, every node gets a new grace period")
		c.health.restart(now)
	}
	for zone, r := range change.rates {
		c.log.Info("zone's eviction rate changed", "zone", zone, "state", c.disruption.states[zone], "nodes_per_second", r)
		c.tainter.setRate(zone, r, now)
	}
}

// setTaints adds and removes taints on the Node if that changes anything.
func (c *controller) setTaints(ctx context.Context, n *corev1.Node, add, remove []corev1.Taint, now time.Time, why string) {
	taints, changed := swapTaints(n.Spec.Taints, add, remove, metav1.NewTime(now))
	if !changed {
		return
	}
	if err := patchTaints(ctx, c.client, n, taints); err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			c.log.Warn("node lifecycle: changing taints", "node", n.Name, "error", err)
		}
		return
	}
	c.log.Info("node taints changed", "node", n.Name, "added", taintKeys(add), "removed", taintKeys(remove), "reason", why)
}

// taintingPass gives queued nodes their NoExecute taint, as fast as their
// zones' rates allow.
func (c *controller) taintingPass(ctx context.Context) {
	now := c.clock.Now()
	c.tainter.pass(now,
		func(name string) bool {
			n, err := c.nodes.Get(name)
			return err == nil && needsNoExecute(n)
		},
		func(name string) error {
			n, err := c.nodes.Get(name)
			if err != nil {
				return err
			}
			want, opposite := wantedNoExecute(nodehealth.Condition(n, corev1.NodeReady))
			taints, _ := swapTaints(n.Spec.Taints, []corev1.Taint{*want}, []corev1.Taint{*opposite}, metav1.NewTime(now))
			if err := patchTaints(ctx, c.client, n, taints); err != nil {
				c.log.Warn("node lifecycle: adding NoExecute taint", "node", name, "error", err)
				return err
			}
			c.log.Info("node tainted NoExecute: its pods are evicted after their tolerations", "node", name, "taint", want.Key)
			return nil
		})
}

func nodeRef(n *corev1.Node) *corev1.ObjectReference {
	return &corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}
}

func taintKeys(ts []corev1.Taint) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	return out
}
