package cluster

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/nodeagent"
)

// sleepers is a Deployment of busybox pods that tolerate an unreachable or
// not-ready node for 5 s only, as upstream's e2e tests set them (the
// DefaultTolerationSeconds admission would give 300 s): the pods of a dead
// node are evicted soon after it is tainted.
const sleepers = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleepers
spec:
  replicas: 4
  selector:
    matchLabels: {app: sleepers}
  template:
    metadata:
      labels: {app: sleepers}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: sleep
        image: ` + nodeagent.BusyboxImage + `
        command: [sleep, "3600"]
`

// nodeScenario is issue 8 on real agents: it keeps the namespace of the
// sleepers Deployment between its steps.
type nodeScenario struct {
	c  *testCluster
	ns string
}

// testNodesJoin: both agents joined with the token through one server,
// registered their Nodes with their own addresses, and got distinct pod
// CIDRs from the nodeipam plugin, inside the cluster CIDR.
func (s *nodeScenario) testNodesJoin(t *testing.T) {
	_, cluster, _ := net.ParseCIDR(s.c.clusterCIDR)
	seen := map[string]string{}
	for _, name := range agentNames {
		n := s.c.waitNode(t, name, "Ready", func(n *v1.Node) bool { return ready(n) == v1.ConditionTrue })
		ip, cidr, err := net.ParseCIDR(n.Spec.PodCIDR)
		if err != nil || !cluster.Contains(ip) {
			t.Errorf("node %s has pod CIDR %q, not a range of the cluster CIDR %s", name, n.Spec.PodCIDR, s.c.clusterCIDR)
			continue
		}
		if ones, _ := cidr.Mask.Size(); ones != 24 {
			t.Errorf("node %s has pod CIDR %s, want a /24", name, cidr)
		}
		if other, dup := seen[cidr.String()]; dup {
			t.Errorf("nodes %s and %s share the pod CIDR %s", other, name, cidr)
		}
		seen[cidr.String()] = name
		want := s.c.Net.Host(name).IP
		if got := internalIP(n); got != want {
			t.Errorf("node %s reports InternalIP %q, want its address %s", name, got, want)
		}
		if pids := s.c.agents[name].Containerd(); len(pids) != 1 {
			t.Errorf("agent %s runs %d containerd daemons (%v), want its own one", name, len(pids), pids)
		}
	}
}

// testDeploymentSpreads: the scheduler plugin spreads a Deployment's pods
// over both nodes, and every pod runs there with an address from its
// node's pod CIDR.
func (s *nodeScenario) testDeploymentSpreads(t *testing.T) {
	s.ns = s.c.namespace(t, "nodes")
	s.c.kubectl(t).MustIn(t, sleepers, "apply", "-n", s.ns, "-f", "-")
	pods := s.c.waitPods(t, s.ns, "app=sleepers", "4 running on both nodes", func(pods []v1.Pod) bool {
		per := byNode(pods)
		return per["a1"]+per["a2"] == 4 && per["a1"] > 0 && per["a2"] > 0
	})
	for _, p := range pods {
		n, err := s.c.kube(t).CoreV1().Nodes().Get(context.Background(), p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, cidr, _ := net.ParseCIDR(n.Spec.PodCIDR); cidr == nil || !cidr.Contains(net.ParseIP(p.Status.PodIP)) {
			t.Errorf("pod %s on %s has IP %q, outside the node's pod CIDR %s", p.Name, p.Spec.NodeName, p.Status.PodIP, n.Spec.PodCIDR)
		}
	}
	t.Logf("sleepers per node: %v", byNode(pods))
}

// testNodeKilled: an agent killed with kill -9 leaves its Node silent; the
// leader sets Ready=Unknown after the grace period, the nodelifecycle
// plugin taints the node and evicts its pods once their 5 s toleration
// runs out, and the ReplicaSet's replacements run on the other node. When
// the agent comes back, the node is Ready again, untainted, and the agent
// finishes deleting the evicted pods.
func (s *nodeScenario) testNodeKilled(t *testing.T) {
	if s.ns == "" {
		t.Skip("needs the sleepers Deployment")
	}
	const victim, survivor = "a1", "a2"
	var evicted []string
	for _, p := range s.c.pods(t, s.ns, "app=sleepers") {
		if p.Spec.NodeName == victim && p.DeletionTimestamp == nil {
			evicted = append(evicted, p.Name)
		}
	}
	if len(evicted) == 0 {
		t.Fatalf("no sleeper runs on %s", victim)
	}
	killed := time.Now()
	agent := s.c.agents[victim]
	agent.Kill()
	t.Logf("killed agent %s (kill -9) under pods %v", victim, evicted)
	eventually(t, "the agent's containerd dies with it", func() (bool, string) {
		pids := agent.Containerd()
		return len(pids) == 0, fmt.Sprintf("containerd pids %v", pids)
	})
	if len(agent.Shims()) == 0 {
		t.Errorf("no containerd shim outlived the agent: the pods' containers should keep running on a crashed agent's node")
	}

	s.c.waitNode(t, victim, "Ready=Unknown", func(n *v1.Node) bool { return ready(n) == v1.ConditionUnknown })
	t.Logf("%s Ready=Unknown %s after the kill (grace period %s)", victim, time.Since(killed).Round(time.Second), gracePeriod)
	s.c.waitNode(t, victim, "tainted unreachable (NoSchedule and NoExecute)", func(n *v1.Node) bool {
		return hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoExecute) && hasTaint(n, v1.TaintNodeUnreachable, v1.TaintEffectNoSchedule)
	})
	s.c.waitPods(t, s.ns, "app=sleepers", fmt.Sprintf("%v evicted from %s", evicted, victim), func(pods []v1.Pod) bool {
		for _, name := range evicted {
			for _, p := range pods {
				if p.Name == name && p.DeletionTimestamp == nil {
					return false
				}
			}
		}
		return true
	})
	s.c.waitPods(t, s.ns, "app=sleepers", "4 running, all on "+survivor, func(pods []v1.Pod) bool {
		per := byNode(pods)
		return per[survivor] == 4 && per[victim] == 0
	})
	t.Logf("replacements running on %s %s after the kill", survivor, time.Since(killed).Round(time.Second))
	n, err := s.c.kube(t).CoreV1().Nodes().Get(context.Background(), survivor, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ready(n) != v1.ConditionTrue || len(n.Spec.Taints) > 0 {
		t.Errorf("the healthy node was touched: %s", describeNode(n))
	}

	agent.Start(t)
	s.c.waitNode(t, victim, "Ready again without taints", func(n *v1.Node) bool {
		return ready(n) == v1.ConditionTrue && len(n.Spec.Taints) == 0
	})
	s.c.waitPods(t, s.ns, "app=sleepers", fmt.Sprintf("the evicted %v deleted by the returning agent", evicted), func(pods []v1.Pod) bool {
		for _, p := range pods {
			for _, name := range evicted {
				if p.Name == name {
					return false
				}
			}
		}
		return true
	})
	eventually(t, "no container left running on "+victim, func() (bool, string) {
		shims := agent.Shims()
		return len(shims) == 0, fmt.Sprintf("containerd shims %v", shims)
	})
}

// testJoinServerKilled: the agents keep working when the server they
// joined through is gone: they learned every server at join and fail over
// to another, so a pod created for each node afterwards runs there.
func (s *nodeScenario) testJoinServerKilled(t *testing.T) {
	s.c.joinServer.Kill()
	t.Logf("killed %s, the server both agents were given with --server", s.c.joinServer.Name)
	ns := s.c.namespace(t, "failover")
	for _, name := range agentNames {
		pod := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "on-" + name, Labels: map[string]string{"app": "failover"}},
			Spec: v1.PodSpec{
				NodeSelector:                  map[string]string{v1.LabelHostname: name},
				TerminationGracePeriodSeconds: new(int64),
				Containers: []v1.Container{{
					Name: "sleep", Image: nodeagent.BusyboxImage, Command: []string{"sleep", "3600"},
				}},
			},
		}
		if _, err := s.c.kube(t).CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating pod %s: %v", pod.Name, err)
		}
	}
	s.c.waitPods(t, ns, "app=failover", "one running on each node", func(pods []v1.Pod) bool {
		per := byNode(pods)
		return per["a1"] == 1 && per["a2"] == 1
	})
	for _, name := range agentNames {
		s.c.waitNode(t, name, "Ready", func(n *v1.Node) bool { return ready(n) == v1.ConditionTrue })
	}
}

func internalIP(n *v1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == v1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}
