package nodelifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/plugins/sdk/nodehealth"
)

// healthRecord is the last sign of life seen from a node outside the
// gossip pool. Times are this process's own clock when it saw a change,
// never the timestamps the node wrote, so clock skew between nodes and
// the control plane does not matter.
type healthRecord struct {
	probe     time.Time   // when the latest sign of life was seen
	hasReady  bool        // the node had a Ready condition then
	heartbeat metav1.Time // Ready's lastHeartbeatTime then
	renew     time.Time   // the Lease's renewTime then (zero: no Lease seen)
}

// healthTracker watches nodes' Leases and status updates, as upstream's
// monitorNodeHealth does. It lives in memory: a restarted plugin (a new
// leader) starts every node's clock afresh, which only delays marking.
type healthTracker struct {
	cfg     Config
	records map[string]*healthRecord
}

func newHealthTracker(cfg Config) *healthTracker {
	return &healthTracker{cfg: cfg, records: map[string]*healthRecord{}}
}

// observe records the node's status and Lease at now and reports whether
// the node has been silent for longer than its grace period: the monitor
// grace period, or the startup grace period for a node that never posted
// a Ready condition.
func (h *healthTracker) observe(n *corev1.Node, lease *coordinationv1.Lease, now time.Time) bool {
	ready := nodehealth.Condition(n, corev1.NodeReady)
	rec, known := h.records[n.Name]
	switch {
	case !known && ready == nil:
		// Never posted: the startup grace period counts from creation.
		rec = &healthRecord{probe: minTime(n.CreationTimestamp.Time, now)}
	case !known:
		rec = &healthRecord{probe: now, hasReady: true, heartbeat: ready.LastHeartbeatTime}
	case ready != nil && (!rec.hasReady || !ready.LastHeartbeatTime.Equal(&rec.heartbeat)):
		rec.probe, rec.hasReady, rec.heartbeat = now, true, ready.LastHeartbeatTime
	case ready == nil && rec.hasReady:
		// Ready was removed (by hand?): treat it as news, like upstream.
		rec.probe, rec.hasReady = now, false
	}
	if lease != nil && lease.Spec.RenewTime != nil && (rec.renew.IsZero() || lease.Spec.RenewTime.After(rec.renew)) {
		rec.renew, rec.probe = lease.Spec.RenewTime.Time, now
	}
	h.records[n.Name] = rec
	grace := h.cfg.NodeMonitorGracePeriod.Duration
	if ready == nil {
		grace = h.cfg.NodeStartupGracePeriod.Duration
	}
	return now.Sub(rec.probe) > grace
}

// restart gives every node a fresh grace period from now (leaving a full
// disruption: nobody is condemned for the outage itself).
func (h *healthTracker) restart(now time.Time) {
	for _, rec := range h.records {
		rec.probe = now
	}
}

// forget drops the records of nodes not in names.
func (h *healthTracker) forget(keep map[string]bool) {
	for name := range h.records {
		if !keep[name] {
			delete(h.records, name)
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// patchConditions writes the Node's agent conditions as they are in n, on
// the condition that the Node is still version n (an agent that posted in
// between wins). Conditions merge by type, so the others are untouched.
func patchConditions(ctx context.Context, client kubernetes.Interface, n *corev1.Node) error {
	var conds []corev1.NodeCondition
	for _, typ := range nodehealth.AgentConditions {
		if c := nodehealth.Condition(n, typ); c != nil {
			conds = append(conds, *c)
		}
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": n.ResourceVersion},
		"status":   map[string]any{"conditions": conds},
	})
	if err != nil {
		return fmt.Errorf("encoding conditions of node %s: %w", n.Name, err)
	}
	_, err = client.CoreV1().Nodes().Patch(ctx, n.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return fmt.Errorf("marking node %s Ready=Unknown: %w", n.Name, err)
	}
	return nil
}
