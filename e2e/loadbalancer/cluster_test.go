package loadbalancer

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
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

// deadline bounds every wait: a hang guard on a shared machine, not a
// timing claim.
const deadline = 3 * time.Minute

// agentNames are the nodes; a3 is excluded from load balancers and runs
// the backends.
var agentNames = []string{"a1", "a2", "a3"}

const excludedNode = "a3"

type lbCluster struct {
	*ha.Cluster
	kube   kubernetes.Interface
	agents map[string]*nodeagent.Agent
	client *ha.Host
	server *ha.Server
}

// startCluster is the IPv4 cluster: the built-in cloud provider assigns
// LoadBalancer addresses from a pool of the bridge's subnet (.200-.209),
// which deploy asks for by address.
func startCluster(t testing.TB) *lbCluster {
	return startClusterWith(t, clusterOptions{netArgs: func(n *ha.Network) []string {
		return []string{"--load-balancer-pool", fmt.Sprintf("lan=%s-%s", lbIPOf(n, 200), lbIPOf(n, 209))}
	}})
}

// clusterOptions vary the cluster of startClusterWith.
type clusterOptions struct {
	// extraClusterCIDR is appended to the IPv4 cluster CIDR (",fd42::/56"
	// for dual-stack), on the server and every agent.
	extraClusterCIDR string
	// serverArgs are more `keelson server` flags; netArgs more still,
	// computed from the test's network.
	serverArgs []string
	netArgs    func(*ha.Network) []string
	// beforeAgents runs once the network and the server exist.
	beforeAgents func(*lbCluster)
}

func startClusterWith(t testing.TB, o clusterOptions) *lbCluster {
	t.Helper()
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	cidr += o.extraClusterCIDR
	c := &lbCluster{agents: map[string]*nodeagent.Agent{}}
	c.Cluster = ha.NewCluster(t, ha.Options{
		Servers: 1, APIServer: true, Hosts: append(append([]string{}, agentNames...), "client"),
		// --disable-plugin ingress: the built-in ingress's own LoadBalancer
		// Service would hold port 80 of the node addresses, which the
		// cloud provider then refuses this test's Services.
		Args: append([]string{"--cluster-cidr", cidr, "--node-monitor-grace-period", "20s", "--disable-plugin", "ingress",
			"--plugin-config", `nodelifecycle={"nodeMonitorPeriod":"1s"}`}, o.serverArgs...),
		NetArgs: o.netArgs,
	})
	c.server = c.Servers[0]
	if o.beforeAgents != nil {
		o.beforeAgents(c)
	}
	c.client = c.Net.Host("client")
	c.kube = c.server.Clientset(t)
	tokenFile := c.AgentTokenFile(t)
	for _, name := range agentNames {
		h := c.Net.Host(name)
		args := []string{
			"--server", "https://" + net.JoinHostPort(c.server.IP, "6443"),
			"--token-file", tokenFile, "--node-ip", h.IP, "--kubelet-address", h.IP, "--cluster-cidr", cidr,
			// Fast failure detection (README, Load balancers: announcing):
			// a dead node is declared failed about a second after it is
			// first suspected, not four.
			"--gossip-probe-interval", "500ms", "--gossip-probe-timeout", "250ms", "--gossip-suspicion-mult", "2",
		}
		if name == excludedNode {
			args = append(args, "--node-label", v1.LabelNodeExcludeBalancers+"=true")
		}
		a := nodeagent.New(t, nodeagent.Options{Name: name, NetNS: h.NS, Args: args})
		a.Start(t)
		c.agents[name] = a
	}
	for _, name := range agentNames {
		c.waitNodeReady(t, name)
	}
	return c
}

func (c *lbCluster) waitNodeReady(t testing.TB, name string) {
	t.Helper()
	harness.Eventually(t, deadline, "node "+name+" Ready with a pod CIDR", func() (bool, string) {
		n, err := c.kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady {
				return cond.Status == v1.ConditionTrue && n.Spec.PodCIDR != "", string(cond.Status)
			}
		}
		return false, "no Ready condition"
	})
}

// lbIP is an address of the bridge's subnet that no host uses (hosts take
// .11 upwards, the bridge .1).
func (c *lbCluster) lbIP(last int) string { return lbIPOf(c.Net, last) }

func lbIPOf(n *ha.Network, last int) string {
	b := n.BridgeIP()
	return b[:strings.LastIndex(b, ".")+1] + fmt.Sprint(last)
}

func (c *lbCluster) kubectl(t testing.TB) harness.Kubectl {
	return harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: filepath.Join(c.server.DataDir(), "admin.kubeconfig")}
}

// macOf is the MAC of eth0 in the host's namespace.
func macOf(t testing.TB, h *ha.Host) string {
	t.Helper()
	out, err := h.Exec("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// announcer returns which node the client's neighbour table says holds ip
// ("" when no entry with a MAC of a node).
func (c *lbCluster) announcer(t testing.TB, ip string, macs map[string]string) string {
	out, _ := c.client.Exec("ip", "neigh", "show", ip)
	for node, mac := range macs {
		if strings.Contains(out, mac) {
			return node
		}
	}
	return ""
}

// get asks http://ip/cgi-bin/who from the client namespace with a short
// timeout; it returns the body ("POD CLIENTADDR").
func (c *lbCluster) get(ip string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.client.NS, "curl", "-sS", "--fail",
		"--max-time", fmt.Sprintf("%.1f", timeout.Seconds()), "http://"+ip+"/cgi-bin/who").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("curl http://%s: %w: %s", ip, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}
