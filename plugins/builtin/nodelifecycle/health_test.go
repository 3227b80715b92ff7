package nodelifecycle

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lease(renew time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(renew)
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &t}}
}

func readyAt(heartbeat time.Time) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.NewTime(heartbeat)}}
	return n
}

// TestHealthByLease: a node that renews its Lease stays healthy however old
// its status; one that stops is silent after the grace period, counted on
// this controller's clock from the last renewal it saw.
func TestHealthByLease(t *testing.T) {
	h := newHealthTracker(DefaultConfig()) // grace 40s
	n := readyAt(t0.Add(-time.Hour))       // status posted long ago
	at := t0
	for i := range 10 {
		if h.observe(n, lease(at), at) {
			t.Fatalf("renewing node silent at pass %d", i)
		}
		at = at.Add(10 * time.Second)
	}
	last := at.Add(-10 * time.Second) // the last renewal seen
	stale := lease(last)
	for at.Sub(last) <= 40*time.Second {
		if h.observe(n, stale, at) {
			t.Fatalf("silent after %s, within the grace period", at.Sub(last))
		}
		at = at.Add(5 * time.Second)
	}
	if !h.observe(n, stale, at) {
		t.Fatalf("not silent %s after the last renewal", at.Sub(last))
	}
}

func TestHealthByStatus(t *testing.T) {
	h := newHealthTracker(DefaultConfig())
	if h.observe(readyAt(t0), nil, t0) {
		t.Fatal("a node seen for the first time is silent")
	}
	if h.observe(readyAt(t0.Add(30*time.Second)), nil, t0.Add(30*time.Second)) {
		t.Fatal("silent right after a status update")
	}
	if h.observe(readyAt(t0.Add(30*time.Second)), nil, t0.Add(70*time.Second)) {
		t.Fatal("silent 40s after its last status update (grace is 40s, exclusive)")
	}
	if !h.observe(readyAt(t0.Add(30*time.Second)), nil, t0.Add(71*time.Second)) {
		t.Fatal("not silent 41s after its last status update")
	}
}

// TestHealthNewLeader: a restarted controller gives every node a full grace
// period, whatever the timestamps in the node say.
func TestHealthNewLeader(t *testing.T) {
	h := newHealthTracker(DefaultConfig())
	n := readyAt(t0.Add(-24 * time.Hour))
	if h.observe(n, lease(t0.Add(-24*time.Hour)), t0) || h.observe(n, lease(t0.Add(-24*time.Hour)), t0.Add(40*time.Second)) {
		t.Fatal("a node silent for a day is marked within the new controller's first grace period")
	}
	if !h.observe(n, lease(t0.Add(-24*time.Hour)), t0.Add(41*time.Second)) {
		t.Fatal("not silent after the new controller's grace period")
	}
	h.restart(t0.Add(41 * time.Second))
	if h.observe(n, nil, t0.Add(80*time.Second)) {
		t.Fatal("silent within the grace period that followed a restart")
	}
}

// TestHealthNeverPosted: a node that never posted Ready gets the startup
// grace period, counted from its creation.
func TestHealthNeverPosted(t *testing.T) {
	h := newHealthTracker(DefaultConfig()) // startup grace 1m
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "new", CreationTimestamp: metav1.NewTime(t0)}}
	if h.observe(n, nil, t0.Add(50*time.Second)) {
		t.Fatal("silent within the startup grace period")
	}
	if !h.observe(n, nil, t0.Add(61*time.Second)) {
		t.Fatal("not silent after the startup grace period")
	}
	old := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "old", CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	if !h.observe(old, nil, t0) {
		t.Fatal("a node created an hour ago that never posted is not silent")
	}
}

func TestConfig(t *testing.T) {
	cfg, err := parseConfig([]byte(`{"nodeMonitorGracePeriod":"8s","nodeEvictionRate":0}`))
	if err != nil || cfg.NodeMonitorGracePeriod.Duration != 8*time.Second || cfg.NodeEvictionRate != 0 || cfg.SecondaryNodeEvictionRate != 0.01 {
		t.Fatalf("parseConfig: %+v %v", cfg, err)
	}
	for _, tc := range []struct{ raw, want string }{
		{`{"nodeMonitorGracePeriod":"soon"}`, `nodeMonitorGracePeriod: soon is not a duration`},
		{`{"nodeMonitorGracePeriod":40}`, `nodeMonitorGracePeriod: 40 is not a duration`},
		{`{"nodeMonitorPeriod":"0s"}`, `nodeMonitorPeriod: 0s must be positive`},
		{`{"nodeMonitorGracePeriod":"2s"}`, `nodeMonitorGracePeriod: 2s is shorter than nodeMonitorPeriod 5s`},
		{`{"nodeEvictionRate":-1}`, `nodeEvictionRate: -1 must not be negative`},
		{`{"unhealthyZoneThreshold":1.5}`, `unhealthyZoneThreshold: 1.5 must be in (0, 1]`},
		{`{"largeClusterSizeThreshold":-3}`, `largeClusterSizeThreshold: -3`},
		{`{"nodeEvictionrate":0.2}`, `unknown field "nodeEvictionrate"`},
	} {
		_, err := parseConfig([]byte(tc.raw))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "plugins.config.nodelifecycle") {
			t.Errorf("parseConfig(%s) = %v, want an error saying %q", tc.raw, err, tc.want)
		}
	}
}
