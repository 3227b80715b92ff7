package liveness

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/internal/nodehealth"
	"github.com/keelson/keelson/internal/serfpool"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

const grace = 40 * time.Second

// node is a Node with the given Ready status (empty: no conditions);
// gossip marks it gossip-managed.
func node(name string, gossip bool, ready corev1.ConditionStatus, reason string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour))}}
	if gossip {
		n.Annotations = map[string]string{nodehealth.LivenessAnnotation: nodehealth.LivenessGossip}
	}
	if ready != "" {
		for _, typ := range nodehealth.AgentConditions {
			st := corev1.ConditionFalse
			if typ == corev1.NodeReady {
				st = ready
			}
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: typ, Status: st, Reason: reason})
		}
	}
	return n
}

func allUnknownNode(name string) *corev1.Node {
	n := node(name, true, corev1.ConditionUnknown, nodehealth.ReasonUnknown)
	for i := range n.Status.Conditions {
		n.Status.Conditions[i].Status = corev1.ConditionUnknown
	}
	return n
}

func member(name string, st serfpool.Status, ago time.Duration) serfpool.Member {
	return serfpool.Member{Name: name, Role: serfpool.RoleAgent, Status: st, Since: t0.Add(-ago)}
}

func TestPlan(t *testing.T) {
	ledLong := t0.Add(-time.Hour)
	tests := []struct {
		name        string
		nodes       []*corev1.Node
		members     []serfpool.Member
		missing     map[string]time.Duration // node -> missing for
		leaderSince time.Time
		want        string
	}{
		{name: "steady state: alive member, Ready node: nothing to write",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, "KubeletReady")},
			members: []serfpool.Member{member("n1", serfpool.StatusAlive, time.Hour)}, leaderSince: ledLong},
		{name: "a member's Node is marked gossip-managed once",
			nodes:   []*corev1.Node{node("n1", false, corev1.ConditionTrue, "KubeletReady")},
			members: []serfpool.Member{member("n1", serfpool.StatusAlive, time.Second)}, leaderSince: ledLong,
			want: "annotate n1"},
		{name: "a Node without a member is the Lease path's",
			nodes: []*corev1.Node{node("kwok-1", false, corev1.ConditionTrue, "")}, leaderSince: ledLong},
		{name: "an unmarked Node whose member failed is not marked now",
			nodes:   []*corev1.Node{node("n1", false, corev1.ConditionTrue, "")},
			members: []serfpool.Member{member("n1", serfpool.StatusFailed, time.Hour)}, leaderSince: ledLong},
		{name: "failed for less than the grace period: wait",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, "")},
			members: []serfpool.Member{member("n1", serfpool.StatusFailed, grace-time.Second)}, leaderSince: ledLong},
		{name: "failed for the grace period: mark down",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, "")},
			members: []serfpool.Member{member("n1", serfpool.StatusFailed, grace)}, leaderSince: ledLong,
			want: "mark-down n1"},
		{name: "a new leader waits a full grace period whatever its pool says",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, ""), node("n2", true, corev1.ConditionTrue, "")},
			members: []serfpool.Member{member("n1", serfpool.StatusFailed, time.Hour), member("n2", serfpool.StatusFailed, time.Hour)},
			missing: nil, leaderSince: t0.Add(-grace + time.Second)},
		{name: "a leader of a full grace period marks down",
			nodes:       []*corev1.Node{node("n1", true, corev1.ConditionTrue, "")},
			members:     []serfpool.Member{member("n1", serfpool.StatusFailed, time.Hour)},
			leaderSince: t0.Add(-grace), want: "mark-down n1"},
		{name: "a node that left is down too",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionFalse, "KubeletNotReady")},
			members: []serfpool.Member{member("n1", serfpool.StatusLeft, time.Hour)}, leaderSince: ledLong,
			want: "mark-down n1"},
		{name: "a leaving member is still alive",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, "")},
			members: []serfpool.Member{member("n1", serfpool.StatusLeaving, time.Hour)}, leaderSince: ledLong},
		{name: "already Unknown: no second write",
			nodes:   []*corev1.Node{allUnknownNode("n1")},
			members: []serfpool.Member{member("n1", serfpool.StatusFailed, time.Hour)}, leaderSince: ledLong},
		{name: "missing from the pool for the grace period: mark down",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionTrue, ""), node("n2", true, corev1.ConditionTrue, "")},
			missing: map[string]time.Duration{"n1": grace, "n2": time.Second}, leaderSince: ledLong,
			want: "mark-down n1"},
		{name: "alive again after a liveness Unknown: restore Ready",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionUnknown, nodehealth.ReasonUnknown)},
			members: []serfpool.Member{member("n1", serfpool.StatusAlive, time.Second)}, leaderSince: ledLong,
			want: "restore n1"},
		{name: "a node whose agent never posted status is not made Ready",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionUnknown, nodehealth.ReasonNeverUpdated)},
			members: []serfpool.Member{member("n1", serfpool.StatusAlive, time.Second)}, leaderSince: ledLong},
		{name: "an agent's own NotReady is left alone",
			nodes:   []*corev1.Node{node("n1", true, corev1.ConditionFalse, "KubeletNotReady")},
			members: []serfpool.Member{member("n1", serfpool.StatusAlive, time.Hour)}, leaderSince: ledLong},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := planInput{now: t0, leaderSince: tc.leaderSince, grace: grace, nodes: tc.nodes,
				members: map[string]serfpool.Member{}, missingSince: map[string]time.Time{}}
			for _, m := range tc.members {
				in.members[m.Name] = m
			}
			for n, d := range tc.missing {
				in.missingSince[n] = t0.Add(-d)
			}
			if got := stepsString(plan(in)); got != tc.want {
				t.Errorf("plan = %q, want %q", got, tc.want)
			}
		})
	}
}

func stepsString(steps []step) string {
	var out []string
	for _, s := range steps {
		out = append(out, fmt.Sprintf("%s %s", s.kind, s.node))
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

func TestRestoreReady(t *testing.T) {
	now := metav1.NewTime(t0)
	n := node("n1", true, corev1.ConditionUnknown, nodehealth.ReasonUnknown)
	if !restoreReady(n, now) {
		t.Fatal("restoreReady did not restore a liveness Unknown")
	}
	c := nodehealth.Condition(n, corev1.NodeReady)
	if c.Status != corev1.ConditionTrue || c.Reason != ReasonReady || !c.LastTransitionTime.Equal(&now) {
		t.Errorf("Ready after restore: %+v", c)
	}
	if restoreReady(n, now) {
		t.Error("restoreReady changed a Ready node")
	}
	if restoreReady(node("n2", true, corev1.ConditionUnknown, nodehealth.ReasonNeverUpdated), now) {
		t.Error("restoreReady made a never-reported node Ready")
	}
}
