package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// gracePeriod is the servers' --node-monitor-grace-period: how long a
// node's agent may be silent before its Node turns Ready=Unknown. Short,
// so that a killed node is noticed while the test waits.
const gracePeriod = 20 * time.Second

// deadline bounds every wait; it is a hang guard on a busy shared machine,
// not a timing claim.
const deadline = 3 * time.Minute

// agentNames are the node agents' hosts (and Node names).
var agentNames = []string{"a1", "a2"}

// TestCluster runs every scenario on one cluster, in an order where each
// leaves the cluster usable for the next: the destructive ones (an agent
// killed, the other one's cable pulled, the join server killed) come last.
func TestCluster(t *testing.T) {
	c := startCluster(t)
	nodes := &nodeScenario{c: c}
	t.Run("NodesJoin", nodes.testNodesJoin)
	t.Run("DeploymentSpreads", nodes.testDeploymentSpreads)

	svc := &serviceScenario{c: c}
	if t.Run("Expose", svc.testExpose) {
		t.Run("ProxyMode", svc.testProxyMode)
		t.Run("PodsWithoutNAT", svc.testPodsWithoutNAT)
		t.Run("ClusterIP", svc.testClusterIP)
		t.Run("DNS", svc.testDNS)
		t.Run("Dashboard", svc.testDashboard)
		t.Run("Environment", svc.testEnvironment)
		t.Run("NodePort", svc.testNodePort)
		t.Run("Headless", svc.testHeadless)
		t.Run("StatefulSetDNS", svc.testStatefulSetDNS)
		t.Run("SessionAffinity", svc.testSessionAffinity)
		t.Run("RemovedEndpoint", svc.testRemovedEndpoint)
		t.Run("NetworkPolicy", svc.testNetworkPolicy)
	}
	svc.cleanup(t)

	t.Run("NodeKilled", nodes.testNodeKilled)
	t.Run("CableUnplugged", nodes.testCableUnplugged)
	t.Run("ServersUnreachable", nodes.testServersUnreachable)
	t.Run("JoinServerKilled", nodes.testJoinServerKilled)
}

// testCluster is three servers and two agents, each in its own network
// namespace on one bridge.
type testCluster struct {
	*ha.Cluster
	// clusterCIDR is the pod range (--cluster-cidr) the nodes' /24s come
	// from; no route of this machine overlaps it.
	clusterCIDR string
	agents      map[string]*nodeagent.Agent
	// joinServer is the server the agents were given with --server.
	joinServer *ha.Server

	mu      sync.Mutex
	clients map[*ha.Server]*kubernetes.Clientset
}

// startCluster starts three servers, then the agents joining through the
// first server with its token, and waits until both Nodes are Ready.
// Everything is stopped and removed when the test ends.
func startCluster(t *testing.T) *testCluster {
	t.Helper()
	return startClusterOf(t, 3)
}

// startClusterOf is startCluster with the given number of servers.
func startClusterOf(t *testing.T, servers int) *testCluster {
	t.Helper()
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{clusterCIDR: cidr, agents: map[string]*nodeagent.Agent{}, clients: map[*ha.Server]*kubernetes.Clientset{}}
	start := time.Now()
	c.Cluster = ha.NewCluster(t, ha.Options{
		Servers:   servers,
		APIServer: true,
		Hosts:     agentNames,
		Args: []string{
			"--cluster-cidr", cidr,
			"--node-monitor-grace-period", gracePeriod.String(),
			// Notice unhealthy nodes every second rather than every five.
			"--plugin-config", `nodelifecycle={"nodeMonitorPeriod":"1s"}`,
		},
	})
	c.joinServer = c.Servers[0]
	// Agents hold only the agent token, never the server token.
	tokenFile := c.AgentTokenFile(t)
	for _, name := range agentNames {
		h := c.Net.Host(name)
		a := nodeagent.New(t, nodeagent.Options{Name: name, NetNS: h.NS, Args: []string{
			"--server", "https://" + net.JoinHostPort(c.joinServer.IP, "6443"),
			"--token-file", tokenFile,
			"--node-ip", h.IP,
			"--kubelet-address", h.IP,
			"--cluster-cidr", cidr,
		}})
		a.Start(t)
		c.agents[name] = a
	}
	for _, name := range agentNames {
		c.waitNode(t, name, "Ready with a pod CIDR", func(n *v1.Node) bool {
			return ready(n) == v1.ConditionTrue && n.Spec.PodCIDR != ""
		})
	}
	t.Logf("cluster of %d servers and %d agents ready after %s (cluster CIDR %s)",
		len(c.Servers), len(c.agents), time.Since(start).Round(time.Second), cidr)
	return c
}

// kube returns an admin client of the first server that runs.
func (c *testCluster) kube(t testing.TB) kubernetes.Interface {
	t.Helper()
	s := c.serving(t)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients[s] == nil {
		c.clients[s] = s.Clientset(t)
	}
	return c.clients[s]
}

// kubectl runs `keelson kubectl` as the admin of the first server that
// runs.
func (c *testCluster) kubectl(t testing.TB) harness.Kubectl {
	t.Helper()
	s := c.serving(t)
	return harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: filepath.Join(s.DataDir(), "admin.kubeconfig")}
}

func (c *testCluster) serving(t testing.TB) *ha.Server {
	t.Helper()
	for _, s := range c.Servers {
		if s.Serving() {
			return s
		}
	}
	t.Fatal("no server is running")
	return nil
}

// namespace creates a namespace for one scenario and waits for its default
// ServiceAccount (the serviceaccount plugin's), without which no pod is
// admitted.
func (c *testCluster) namespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx := context.Background()
	name := prefix + "-" + randomHex(3)
	if _, err := c.kube(t).CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	eventually(t, "the default ServiceAccount of namespace "+name, func() (bool, string) {
		_, err := c.kube(t).CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return name
}

// waitNode waits until cond holds for the Node and returns it.
func (c *testCluster) waitNode(t testing.TB, name, what string, cond func(*v1.Node) bool) *v1.Node {
	t.Helper()
	var node *v1.Node
	eventually(t, "node "+name+" "+what, func() (bool, string) {
		n, err := c.kube(t).CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		node = n
		return cond(n), describeNode(n)
	})
	return node
}

// pods lists the pods of a namespace matching a label selector, by name.
func (c *testCluster) pods(t testing.TB, ns, selector string) []v1.Pod {
	t.Helper()
	list, err := c.kube(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("listing pods %s in %s: %v", selector, ns, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

// waitPods waits until the pods matching selector satisfy cond and returns
// them.
func (c *testCluster) waitPods(t testing.TB, ns, selector, what string, cond func([]v1.Pod) bool) []v1.Pod {
	t.Helper()
	var pods []v1.Pod
	eventually(t, fmt.Sprintf("pods %s in %s: %s", selector, ns, what), func() (bool, string) {
		pods = c.pods(t, ns, selector)
		return cond(pods), describePods(pods)
	})
	return pods
}

// running reports whether the pod runs with every container ready and is
// not being deleted.
func running(p *v1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != v1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// byNode counts the running pods per node.
func byNode(pods []v1.Pod) map[string]int {
	out := map[string]int{}
	for i := range pods {
		if running(&pods[i]) {
			out[pods[i].Spec.NodeName]++
		}
	}
	return out
}

func ready(n *v1.Node) v1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status
		}
	}
	return ""
}

func hasTaint(n *v1.Node, key string, effect v1.TaintEffect) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(tn v1.Taint) bool { return tn.Key == key && tn.Effect == effect })
}

func describeNode(n *v1.Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "podCIDRs=%v ready=%s", n.Spec.PodCIDRs, ready(n))
	for _, tn := range n.Spec.Taints {
		fmt.Fprintf(&b, " taint=%s:%s", tn.Key, tn.Effect)
	}
	return b.String()
}

func describePods(pods []v1.Pod) string {
	var s []string
	for _, p := range pods {
		d := fmt.Sprintf("%s@%s:%s", p.Name, p.Spec.NodeName, p.Status.Phase)
		if p.DeletionTimestamp != nil {
			d += "(deleting)"
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				d += fmt.Sprintf("[%s: %s %s]", cs.Name, w.Reason, w.Message)
			}
		}
		s = append(s, d)
	}
	return fmt.Sprintf("%d pods: %s", len(pods), strings.Join(s, " "))
}

// eventually waits for cond (see harness.Eventually) up to deadline.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	harness.Eventually(t, deadline, what, cond)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
