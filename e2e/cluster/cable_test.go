package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/internal/nodehealth"
)

// testCableUnplugged pulls a node's cable: its link to the bridge goes
// down, so it loses every server (gossip and API, both ways) while its
// agent keeps running. The leader sets Ready=Unknown after the grace
// period, the node is tainted unreachable, its pods are evicted and
// replaced on the other node, while the cut-off agent keeps their
// containers running, as kubelet does without its API server. The raft
// leader is killed meanwhile: the new one keeps the node Unknown and the
// taints' start times. An operator force-deletes one of the evicted pods
// while the node is away. When the cable is back, the agent rejoins, the
// node is Ready again with the agent's own conditions, untainted, the
// agent stops every container of the pods deleted meanwhile, and the
// Deployment runs exactly its replicas. Ready goes True, Unknown, True
// once each: the leader and the agent never fight over it.
func (s *nodeScenario) testCableUnplugged(t *testing.T) {
	if s.ns == "" {
		t.Skip("needs the sleepers Deployment")
	}
	const victim, survivor = "a2", "a1"
	// The previous scenarios may have left the node just back: start from
	// a healthy one, so the history below begins with Ready=True.
	s.c.waitNode(t, victim, "Ready without taints", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionTrue && len(n.Spec.Taints) == 0
	})
	var evicted []string
	for _, p := range s.c.pods(t, s.ns, "app=sleepers") {
		if p.Spec.NodeName == victim && p.DeletionTimestamp == nil {
			evicted = append(evicted, p.Name)
		}
	}
	if len(evicted) == 0 {
		t.Fatalf("no sleeper runs on %s", victim)
	}
	agent, host := s.c.agents[victim], s.c.Net.Host(victim)
	shims := agent.Shims()
	leader, term := s.c.WaitLeader(t, time.Minute, nil)
	// Watch the node through a server that outlives the leader's kill.
	history := watchReady(t, s.c.Followers(leader)[0].Clientset(t), victim)

	unplugged := time.Now()
	if err := host.Unplug(); err != nil {
		t.Fatal(err)
	}
	plugged := false
	t.Cleanup(func() {
		if !plugged {
			if err := host.Plug(); err != nil {
				t.Errorf("putting %s's cable back: %v", victim, err)
			}
		}
	})
	t.Logf("pulled %s's cable under pods %v", victim, evicted)

	s.c.waitNode(t, victim, "Ready=Unknown", func(n *v1.Node) bool { return ready(n) == v1.ConditionUnknown })
	t.Logf("%s Ready=Unknown %s after the cable was pulled (grace period %s)", victim, time.Since(unplugged).Round(time.Second), gracePeriod)
	tainted := s.c.waitNode(t, victim, "tainted unreachable (NoSchedule and NoExecute)", func(n *v1.Node) bool {
		return hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) && hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoSchedule)
	})

	leader.Kill()
	newLeader, _ := s.c.WaitLeader(t, deadline, func(l *ha.Server, tm uint64) bool { return l != leader && tm > term })
	t.Logf("killed the raft leader %s; %s leads now", leader.Name, newLeader.Name)

	s.c.waitPods(t, s.ns, "app=sleepers", fmt.Sprintf("%v evicted from %s", evicted, victim), func(pods []v1.Pod) bool {
		return !slices.ContainsFunc(pods, func(p v1.Pod) bool { return slices.Contains(evicted, p.Name) && p.DeletionTimestamp == nil })
	})
	// The operator's way out for a pod stuck terminating on a lost node.
	zero := int64(0)
	if err := s.c.kube(t).CoreV1().Pods(s.ns).Delete(context.Background(), evicted[0], metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("force-deleting pod %s: %v", evicted[0], err)
	}
	s.c.waitPods(t, s.ns, "app=sleepers", "4 running, all on "+survivor, func(pods []v1.Pod) bool {
		per := byNode(pods)
		return per[survivor] == 4 && per[victim] == 0
	})
	t.Logf("replacements running on %s %s after the cable was pulled", survivor, time.Since(unplugged).Round(time.Second))

	for _, pid := range shims {
		if !slices.Contains(agent.Shims(), pid) {
			t.Errorf("containerd shim %d on %s is gone: a cut-off node must keep its pods' containers running", pid, victim)
		}
	}
	n, err := s.c.kube(t).CoreV1().Nodes().Get(context.Background(), victim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ready(n) != v1.ConditionUnknown {
		t.Errorf("under the new leader, the cut-off node is %s", describeNode(n))
	}
	for _, want := range tainted.Spec.Taints {
		if !slices.ContainsFunc(n.Spec.Taints, func(got v1.Taint) bool { return got.MatchTaint(&want) && got.TimeAdded.Equal(want.TimeAdded) }) {
			t.Errorf("taint %s:%s added at %v is not on the node any more as it was (the eviction clock restarted?): %v",
				want.Key, want.Effect, want.TimeAdded, n.Spec.Taints)
		}
	}

	leader.Start(t) // the later scenarios need three servers
	if err := host.Plug(); err != nil {
		t.Fatal(err)
	}
	plugged = true
	back := time.Now()
	t.Logf("put %s's cable back", victim)

	s.c.waitNode(t, victim, "Ready again with the agent's own conditions, untainted", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionTrue && !anyUnknown(n) && len(n.Spec.Taints) == 0
	})
	t.Logf("%s Ready again %s after the cable was back", victim, time.Since(back).Round(time.Second))
	s.c.waitPods(t, s.ns, "app=sleepers", fmt.Sprintf("the evicted %v deleted by the returning agent", evicted), func(pods []v1.Pod) bool {
		return !slices.ContainsFunc(pods, func(p v1.Pod) bool { return slices.Contains(evicted, p.Name) })
	})
	eventually(t, "no container left running on "+victim, func() (bool, string) {
		shims := agent.Shims()
		return len(shims) == 0, fmt.Sprintf("containerd shims %v", shims)
	})
	pods := s.c.pods(t, s.ns, "app=sleepers")
	if per := byNode(pods); len(pods) != 4 || per[survivor] != 4 {
		t.Errorf("the Deployment should run exactly its 4 replicas on %s: %s", survivor, describePods(pods))
	}
	s.c.waitNode(t, survivor, "Ready", func(n *v1.Node) bool { return ready(n) == v1.ConditionTrue })
	history.check(t, back)
}

// anyUnknown reports whether one of the conditions the agent measures is
// still Unknown.
func anyUnknown(n *v1.Node) bool {
	for _, typ := range nodehealth.AgentConditions {
		if c := nodehealth.Condition(n, typ); c == nil || c.Status == v1.ConditionUnknown {
			return true
		}
	}
	return false
}

// readyHistory records every Ready status a Node is seen with, in order.
type readyHistory struct {
	node string
	mu   sync.Mutex
	seen []readySeen
}

type readySeen struct {
	at     time.Time
	status v1.ConditionStatus
	reason string
}

// watchReady records the Ready transitions of a Node as client's server
// delivers them, until the test ends.
func watchReady(t *testing.T, client kubernetes.Interface, node string) *readyHistory {
	t.Helper()
	h := &readyHistory{node: node}
	lw := cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "nodes", "", fields.OneTermEqualSelector("metadata.name", node))
	record := func(obj any) {
		n, ok := obj.(*v1.Node)
		if !ok {
			return
		}
		c := nodehealth.Condition(n, v1.NodeReady)
		if c == nil {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if last := len(h.seen) - 1; last < 0 || h.seen[last].status != c.Status {
			h.seen = append(h.seen, readySeen{at: time.Now(), status: c.Status, reason: c.Reason})
		}
	}
	_, informer := cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &v1.Node{},
		Handler: cache.ResourceEventHandlerFuncs{
			AddFunc:    record,
			UpdateFunc: func(_, obj any) { record(obj) },
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		informer.RunWithContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatalf("watching node %s: the informer never synced", node)
	}
	return h
}

// check asserts that Ready went True, Unknown, True, once each: never True
// while the node was cut off (before back), never Unknown again once back.
func (h *readyHistory) check(t *testing.T, back time.Time) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var got []string
	for _, s := range h.seen {
		got = append(got, fmt.Sprintf("%s(%s)@%s", s.status, s.reason, s.at.Format("15:04:05.000")))
	}
	want := []v1.ConditionStatus{v1.ConditionTrue, v1.ConditionUnknown, v1.ConditionTrue}
	ok := len(h.seen) == len(want)
	for i := range h.seen {
		ok = ok && h.seen[i].status == want[i]
	}
	if ok && h.seen[2].at.Before(back) {
		ok = false
	}
	if !ok {
		t.Errorf("node %s's Ready went %s; want True, Unknown, then True only after the cable was back at %s",
			h.node, strings.Join(got, " -> "), back.Format("15:04:05.000"))
		return
	}
	t.Logf("node %s's Ready went %s", h.node, strings.Join(got, " -> "))
}

// testServersUnreachable cuts a node off from every server while the other
// node still reaches both: gossip alone would keep it alive (the other node
// relays the servers' probes and its refutations), but its agent, finding
// no API server, leaves the pool, so the leader marks it Unknown and taints
// it as for a pulled cable. Once the servers are reachable again the agent
// rejoins and the node is Ready and untainted.
func (s *nodeScenario) testServersUnreachable(t *testing.T) {
	const victim = "a2"
	s.c.waitNode(t, victim, "Ready without taints", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionTrue && len(n.Spec.Taints) == 0
	})
	host := s.c.Net.Host(victim)
	var servers []*ha.Host
	for _, name := range []string{"s1", "s2", "s3"} {
		servers = append(servers, s.c.Net.Host(name))
	}
	cut := time.Now()
	if err := host.Block(true, true, servers...); err != nil {
		t.Fatal(err)
	}
	blocked := true
	t.Cleanup(func() {
		if blocked {
			if err := host.Unblock(); err != nil {
				t.Errorf("unblocking %s: %v", victim, err)
			}
		}
	})
	s.c.waitNode(t, victim, "Ready=Unknown and tainted unreachable", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionUnknown && hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute)
	})
	t.Logf("%s, cut off from the servers only, Ready=Unknown and tainted %s after the cut (grace period %s)",
		victim, time.Since(cut).Round(time.Second), gracePeriod)
	if err := host.Unblock(); err != nil {
		t.Fatal(err)
	}
	blocked = false
	back := time.Now()
	s.c.waitNode(t, victim, "Ready again with the agent's own conditions, untainted", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionTrue && !anyUnknown(n) && len(n.Spec.Taints) == 0
	})
	t.Logf("%s Ready again %s after the servers were reachable again", victim, time.Since(back).Round(time.Second))
}
