package nodes

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/internal/nodehealth"
)

// TestNodeIPAM: the nodeipam plugin process gives every Node its own
// ranges of --cluster-cidr (dual-stack here, with the node mask from its
// config section), and a new leader's plugin never hands out a range a
// Node already holds.
func TestNodeIPAM(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{Plugins: []string{"nodeipam"}, Args: []string{
		"--cluster-cidr", "10.77.0.0/16,fd77::/56", "--plugin-config", `nodeipam={"nodeCIDRMaskSize":26}`}})
	cs := s.Clientset(t)
	ctx := context.Background()
	create := func(name string) {
		t.Helper()
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating node %s: %v", name, err)
		}
	}
	held := map[string]string{} // range -> node
	check := func(name string) {
		t.Helper()
		var cidrs []string
		eventually(t, "podCIDRs on node "+name, func() (bool, string) {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			cidrs = n.Spec.PodCIDRs
			return len(cidrs) == 2 && n.Spec.PodCIDR == cidrs[0], fmt.Sprint(n.Spec.PodCIDR, n.Spec.PodCIDRs)
		})
		v4, v6 := netip.MustParsePrefix(cidrs[0]), netip.MustParsePrefix(cidrs[1])
		if !netip.MustParsePrefix("10.77.0.0/16").Overlaps(v4) || v4.Bits() != 26 {
			t.Errorf("node %s IPv4 range %s: want a /26 of 10.77.0.0/16", name, v4)
		}
		if !netip.MustParsePrefix("fd77::/56").Overlaps(v6) || v6.Bits() != 64 {
			t.Errorf("node %s IPv6 range %s: want a /64 of fd77::/56", name, v6)
		}
		for _, c := range cidrs {
			if other, dup := held[c]; dup && other != name {
				t.Errorf("nodes %s and %s both hold %s", other, name, c)
			}
			held[c] = name
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		create(n)
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		check(n)
	}

	// A new plugin process (after a restart: a new leader) rebuilds its map
	// from the Nodes before it allocates.
	s.RestartAfterKill(t)
	cs = s.Clientset(t)
	for _, n := range []string{"n4", "n5"} {
		create(n)
		check(n)
	}
}

// TestLeaseNodeLifecycle: a node outside the gossip pool (no keelson agent,
// as with kwok) that stops renewing its Lease goes Ready=Unknown after the
// grace period, gets the unreachable taints, and its pods are marked not
// ready and evicted once their toleration runs out; a node that renews its
// Lease is left alone.
func TestLeaseNodeLifecycle(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{Plugins: []string{"nodelifecycle"}, Args: []string{
		"--node-monitor-grace-period", "6s", "--plugin-config", `nodelifecycle={"nodeMonitorPeriod":"1s"}`}})
	cs := s.Clientset(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defaultServiceAccount(t, cs)
	for _, n := range []string{"kwok-live", "kwok-dead"} {
		agentNode(t, cs, n, "zone-a")
		renewLease(t, cs, n)
	}
	boundPod(t, cs, "on-dead", "kwok-dead", 3)
	boundPod(t, cs, "on-live", "kwok-live", 3)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { // kwok-live's kubelet
		for ctx.Err() == nil {
			renewLease(t, cs, "kwok-live")
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	})

	eventually(t, "kwok-dead Ready=Unknown", func() (bool, string) {
		c, _, err := readyOf(cs, "kwok-dead")
		return err == nil && c.Status == corev1.ConditionUnknown && c.Reason == nodehealth.ReasonUnknown, fmt.Sprint(c, err)
	})
	eventually(t, "kwok-dead tainted unreachable (NoSchedule and NoExecute)", func() (bool, string) {
		_, n, err := readyOf(cs, "kwok-dead")
		return err == nil && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) &&
			hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute), taintsOf(n)
	})
	eventually(t, "the pod on kwok-dead evicted", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "on-dead", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.DeletionTimestamp != nil && podCondition(p, corev1.DisruptionTarget) == corev1.ConditionTrue &&
			podCondition(p, corev1.PodReady) == corev1.ConditionFalse, fmt.Sprint(p.DeletionTimestamp, p.Status.Conditions)
	})
	c, n, err := readyOf(cs, "kwok-live")
	if err != nil || c.Status != corev1.ConditionTrue || taintsOf(n) != "" {
		t.Errorf("kwok-live, renewing its Lease: Ready %+v taints %q err %v", c, taintsOf(n), err)
	}
	if p, err := cs.CoreV1().Pods("default").Get(ctx, "on-live", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("the pod on kwok-live: %v %v", err, p.DeletionTimestamp)
	}
}

func renewLease(t *testing.T, cs kubernetes.Interface, name string) {
	now := metav1.NewMicroTime(time.Now())
	leases := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	l, err := leases.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &name, LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now}}
		if _, err := leases.Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
			t.Errorf("creating the Lease of %s: %v", name, err)
		}
		return
	}
	l.Spec.RenewTime = &now
	if _, err := leases.Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Logf("renewing the Lease of %s: %v", name, err)
	}
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// TestGossipNodeLiveness is issue 8's check on a 3-server cluster with two
// simulated agents: killing an agent turns its Node Ready=Unknown within
// the grace period (the raft leader's liveness check, no Lease), the node
// lifecycle plugin taints it and evicts its pods after their toleration;
// killing the raft leader half-way neither hurries that nor touches the
// healthy node. The agent coming back makes its Node Ready again.
func TestGossipNodeLiveness(t *testing.T) {
	c := harness.StartCluster(t, 3, harness.ServerOptions{Plugins: []string{"nodelifecycle"}, Args: []string{
		"--node-monitor-grace-period", "10s", "--plugin-config", `nodelifecycle={"nodeMonitorPeriod":"1s"}`}})
	leader, _ := c.Leader(t)
	var follower *harness.Server
	for _, s := range c.Servers {
		if s != leader {
			follower = s
			break
		}
	}
	cs := follower.Clientset(t) // survives the leader's kill
	ctx := context.Background()
	defaultServiceAccount(t, cs)

	agentA := simulatedAgent(t, "agent-a", c.Servers...)
	simulatedAgent(t, "agent-b", c.Servers...)
	agentNode(t, cs, "agent-a", "zone-a")
	agentNode(t, cs, "agent-b", "zone-a")
	for _, n := range []string{"agent-a", "agent-b"} {
		eventually(t, n+" marked gossip-managed by the leader", func() (bool, string) {
			_, node, err := readyOf(cs, n)
			return err == nil && nodehealth.IsGossip(node), fmt.Sprint(err)
		})
	}
	boundPod(t, cs, "on-a", "agent-a", 5)
	boundPod(t, cs, "on-b", "agent-b", 5)

	// agent-b must stay Ready throughout: watch every change to it.
	bReady := watchReady(t, cs, "agent-b")

	if err := agentA.Close(); err != nil { // a crash: no leave
		t.Fatal(err)
	}
	killed := time.Now()
	// Half-way through the grace period, kill the raft leader.
	time.Sleep(5 * time.Second)
	leader.Kill()
	t.Logf("killed leader %s %s after agent-a", leader.Name(), time.Since(killed).Round(time.Millisecond))

	eventually(t, "agent-a Ready=Unknown", func() (bool, string) {
		c, _, err := readyOf(cs, "agent-a")
		return err == nil && c.Status == corev1.ConditionUnknown && c.Reason == nodehealth.ReasonUnknown, fmt.Sprint(c, err)
	})
	if d := time.Since(killed); d < 10*time.Second {
		t.Errorf("agent-a marked Unknown %s after it died, within the 10s grace period", d)
	}
	t.Logf("agent-a Ready=Unknown %s after it died", time.Since(killed).Round(time.Millisecond))
	eventually(t, "agent-a tainted unreachable NoExecute", func() (bool, string) {
		_, n, err := readyOf(cs, "agent-a")
		return err == nil && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute), taintsOf(n)
	})
	t.Logf("agent-a tainted NoExecute %s after it died", time.Since(killed).Round(time.Millisecond))
	eventually(t, "the pod on agent-a evicted", func() (bool, string) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "on-a", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.DeletionTimestamp != nil && podCondition(p, corev1.DisruptionTarget) == corev1.ConditionTrue &&
			podCondition(p, corev1.PodReady) == corev1.ConditionFalse, fmt.Sprint(p.Status.Conditions)
	})
	t.Logf("the pod on agent-a evicted %s after it died", time.Since(killed).Round(time.Millisecond))
	if p, err := cs.CoreV1().Pods("default").Get(ctx, "on-b", metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Errorf("the pod on the healthy agent-b: %v, deletion %v", err, p.DeletionTimestamp)
	}
	if seen := bReady(); len(seen) != 1 || seen[0] != corev1.ConditionTrue {
		t.Errorf("agent-b's Ready went through %v; it never stopped", seen)
	}

	// agent-a is back: Ready again and the NoExecute taint gone.
	var alive []*harness.Server
	for _, s := range c.Servers {
		if s != leader {
			alive = append(alive, s)
		}
	}
	simulatedAgent(t, "agent-a", alive...)
	eventually(t, "agent-a Ready again and untainted", func() (bool, string) {
		c, n, err := readyOf(cs, "agent-a")
		return err == nil && c.Status == corev1.ConditionTrue && !hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute),
			fmt.Sprint(c.Status, " ", taintsOf(n), err)
	})
}

// watchReady records every Ready status the node goes through from now on;
// the returned function stops watching and returns them.
func watchReady(t *testing.T, cs kubernetes.Interface, name string) func() []corev1.ConditionStatus {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := cs.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []corev1.ConditionStatus
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok || ev.Type == watch.Error {
				continue
			}
			st := corev1.ConditionStatus("")
			if c := nodehealth.Condition(n, corev1.NodeReady); c != nil {
				st = c.Status
			}
			mu.Lock()
			if len(seen) == 0 || seen[len(seen)-1] != st {
				seen = append(seen, st)
			}
			mu.Unlock()
		}
	}()
	return func() []corev1.ConditionStatus {
		cancel()
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}
