package ha

import (
	"context"
	"net"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
)

// AgentOptions adjust StartAgents per agent.
type AgentOptions struct {
	// Args, when set, are further flags for the named agent.
	Args func(name string) []string
	// Prepare, when set, runs before the agent starts (e.g. to put image
	// tarballs in its images directory).
	Prepare func(a *nodeagent.Agent)
	// Bin is the keelson binary the agents start with (default: the binary
	// under test); Agent.SetBin swaps it for an upgrade.
	Bin string
}

// StartAgents runs a `keelson agent` in each named host's namespace,
// joined to the first server with the agent token, its node and kubelet
// address the host's, and waits until every Node is Ready with a pod
// CIDR.
func (c *Cluster) StartAgents(t testing.TB, cidr string, names []string, opts AgentOptions) map[string]*nodeagent.Agent {
	t.Helper()
	srv := c.Servers[0]
	tokenFile := c.AgentTokenFile(t)
	agents := map[string]*nodeagent.Agent{}
	for _, name := range names {
		h := c.Net.Host(name)
		args := []string{"--server", "https://" + net.JoinHostPort(srv.IP, "6443"), "--token-file", tokenFile,
			"--node-ip", h.IP, "--kubelet-address", h.IP, "--cluster-cidr", cidr}
		if opts.Args != nil {
			args = append(args, opts.Args(name)...)
		}
		a := nodeagent.New(t, nodeagent.Options{Name: name, NetNS: h.NS, Args: args, Bin: opts.Bin})
		if opts.Prepare != nil {
			opts.Prepare(a)
		}
		a.Start(t)
		agents[name] = a
	}
	kube := srv.Clientset(t)
	for _, name := range names {
		WaitNodeReady(t, kube, name, 3*time.Minute)
	}
	return agents
}

// WaitNodeReady waits until Node name is Ready and has a pod CIDR.
func WaitNodeReady(t testing.TB, kube kubernetes.Interface, name string, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, "node "+name+" Ready with a pod CIDR", func() (bool, string) {
		n, err := kube.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
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
