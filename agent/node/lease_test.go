package node

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/keelson/keelson/internal/nodehealth"
)

// TestLeaseOnlyOutsideGossip: a node whose liveness the leader takes from
// the gossip pool writes no Lease; one outside it renews its Lease every
// quarter of the Lease's duration, as kubelet does.
func TestLeaseOnlyOutsideGossip(t *testing.T) {
	for _, tt := range []struct {
		name       string
		gossip     bool
		wantWrites bool
	}{
		{"lease node", false, true},
		{"gossip node", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset()
			writes := make(chan string, 100)
			client.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetVerb() == "create" || a.GetVerb() == "update" {
					writes <- a.GetVerb()
				}
				return false, nil, nil
			})
			clock := clockwork.NewFakeClock()
			n := &Node{opts: Options{Name: "n1", LeaseDuration: 40 * time.Second, Client: client}, clock: clock, log: slog.New(slog.DiscardHandler)}
			obj := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "1"}}
			if tt.gossip {
				obj.Annotations = map[string]string{nodehealth.LivenessAnnotation: nodehealth.LivenessGossip}
			}
			n.Observe(obj)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { n.leaseLoop(ctx); close(done) }()
			for range 3 {
				if err := clock.BlockUntilContext(ctx, 1); err != nil {
					t.Fatal(err)
				}
				clock.Advance(10 * time.Second)
			}
			cancel()
			<-done
			got := len(writes)
			if tt.wantWrites && got < 3 {
				t.Errorf("%d Lease writes over three renewal periods, want at least 3", got)
			}
			if !tt.wantWrites && got != 0 {
				t.Errorf("%d Lease writes for a gossip node, want none", got)
			}
		})
	}
}

// TestKeepLeaderVerdict: while the leader holds a gossip node Unknown, the
// agent's measured conditions do not overwrite Ready and the pressures;
// otherwise (Lease node, or Ready not the leader's Unknown) they do.
func TestKeepLeaderVerdict(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	measured := []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
		{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now},
	}
	unknown := []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionUnknown, Reason: nodehealth.ReasonUnknown},
		{Type: v1.NodeReady, Status: v1.ConditionUnknown, Reason: nodehealth.ReasonUnknown},
	}
	gossip := map[string]string{nodehealth.LivenessAnnotation: nodehealth.LivenessGossip}
	for _, tt := range []struct {
		name        string
		annotations map[string]string
		current     []v1.NodeCondition
		wantReady   v1.ConditionStatus
	}{
		{"gossip node held Unknown by the leader", gossip, unknown, v1.ConditionUnknown},
		{"lease node Unknown", nil, unknown, v1.ConditionTrue},
		{"gossip node Ready", gossip, measured, v1.ConditionTrue},
		{"gossip node Unknown for another reason", gossip, []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionUnknown, Reason: "Other"}}, v1.ConditionTrue},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: tt.annotations}, Status: v1.NodeStatus{Conditions: tt.current}}
			got := keepLeaderVerdict(cur, measured)
			if c := cond(got, v1.NodeReady); c.Status != tt.wantReady {
				t.Errorf("Ready = %s (%s), want %s", c.Status, c.Reason, tt.wantReady)
			}
			if tt.wantReady == v1.ConditionUnknown && cond(got, v1.NodeMemoryPressure).Status != v1.ConditionUnknown {
				t.Errorf("MemoryPressure overwritten while the leader holds the node Unknown: %+v", got)
			}
		})
	}
}
