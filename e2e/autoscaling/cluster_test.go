package autoscaling

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// waitTimeout bounds the setup waits; a hang guard on a busy shared
// machine, not a timing claim.
const waitTimeout = 3 * time.Minute

// agentName is the node agent's host and Node name.
const agentName = "w1"

// hpaConfig shortens the HPA's sync period and downscale stabilization
// (5 min upstream) so a scale-down is seen within the test.
const hpaConfig = `horizontalpodautoscaler={"syncPeriod":"5s","downscaleStabilization":"30s"}`

// cluster is one server (every built-in plugin on its leader: the workload
// controllers, the scheduler, metricsserver and horizontalpodautoscaler
// among them) and one agent, each in its own network namespace, since the
// metrics API's endpoint must be a non-loopback address.
type cluster struct {
	*ha.Cluster
	server *ha.Server
	client kubernetes.Interface
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{}
	c.Cluster = ha.NewCluster(t, ha.Options{Servers: 1, APIServer: true, Hosts: []string{agentName},
		Args: []string{"--cluster-cidr", cidr, "--plugin-config", hpaConfig}})
	c.server = c.Servers[0]
	c.client = c.server.Clientset(t)
	h := c.Net.Host(agentName)
	a := nodeagent.New(t, nodeagent.Options{Name: agentName, NetNS: h.NS, Args: []string{
		"--server", "https://" + net.JoinHostPort(c.server.IP, "6443"),
		"--token-file", c.AgentTokenFile(t),
		"--node-ip", h.IP,
		"--kubelet-address", h.IP,
		"--cluster-cidr", cidr,
	}})
	a.Start(t)
	t.Cleanup(c.deleteAllPods)
	harness.Eventually(t, waitTimeout, "node "+agentName+" is Ready with a pod CIDR", func() (bool, string) {
		n, err := c.client.CoreV1().Nodes().Get(context.Background(), agentName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady {
				return cond.Status == v1.ConditionTrue && n.Spec.PodCIDR != "", cond.Message
			}
		}
		return false, "no Ready condition"
	})
	return c
}

// namespace creates a namespace and waits for its default ServiceAccount.
func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, waitTimeout, "namespace "+name+" has its default ServiceAccount", func() (bool, string) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return name
}

// kubectl runs `keelson kubectl` as the admin and returns its output.
func (c *cluster) kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	k := harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: c.server.DataDir() + "/admin.kubeconfig"}
	r := k.RunIn(t, stdin, args...)
	if r.ExitCode != 0 {
		t.Fatalf("kubectl %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

// deleteAllPods lets the agent stop its pods before it is killed.
func (c *cluster) deleteAllPods() {
	ctx := context.Background()
	list, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	for _, p := range list.Items {
		_ = c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if l, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err == nil && len(l.Items) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}
