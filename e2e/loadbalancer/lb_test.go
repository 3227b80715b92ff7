package loadbalancer

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// TestAnnouncer runs every scenario on one cluster; the node kill comes
// last.
func TestAnnouncer(t *testing.T) {
	c := startCluster(t)
	macs := map[string]string{}
	for _, n := range agentNames {
		macs[n] = macOf(t, c.Net.Host(n))
	}
	t.Run("PluginStatusPerNode", c.testPluginStatus)
	clusterIP := c.lbIP(200)
	c.deploy(t, "web", excludedNode, 2, v1.ServiceExternalTrafficPolicyCluster, clusterIP)
	var owner string
	t.Run("Reachable", func(t *testing.T) { owner = c.testReachable(t, clusterIP, macs) })
	t.Run("LocalPolicy", func(t *testing.T) { c.testLocalPolicy(t, macs) })
	if owner != "" {
		t.Run("Failover", func(t *testing.T) { c.testFailover(t, clusterIP, owner, macs) })
	}
}

// testPluginStatus: every agent runs the announcer, and `kubectl get
// plugins` lists it once per node with that node's state.
func (c *lbCluster) testPluginStatus(t *testing.T) {
	harness.Eventually(t, deadline, "kubectl get plugins shows the announcer running on every node", func() (bool, string) {
		r := c.kubectl(t).RunIn(t, "", "get", "plugins", "-l", "keelson.io/node-plugin=announcer", "-o", "json")
		if r.ExitCode != 0 {
			return false, r.String()
		}
		var list struct {
			Items []struct {
				Metadata struct{ Name string }
				Status   struct{ State, Node, Message string }
			}
		}
		if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
			return false, err.Error()
		}
		running := map[string]bool{}
		for _, it := range list.Items {
			if it.Metadata.Name == "announcer."+it.Status.Node && it.Status.State == "running" {
				running[it.Status.Node] = true
			}
		}
		return len(running) == len(agentNames), fmt.Sprintf("%+v", list.Items)
	})
	t.Logf("kubectl get plugins:\n%s", c.kubectl(t).Must(t, "get", "plugins"))
}

// testReachable: the client, on the bridge but no node, gets an answer
// from http://IP, and exactly one node (not the excluded one) holds the IP
// in its neighbour table. It returns that node.
func (c *lbCluster) testReachable(t *testing.T, ip string, macs map[string]string) string {
	var body string
	harness.Eventually(t, deadline, "the client reaches http://"+ip, func() (bool, string) {
		var err error
		body, err = c.get(ip, 2*time.Second)
		return err == nil, fmt.Sprint(err)
	})
	owner := c.announcer(t, ip, macs)
	if owner == "" || owner == excludedNode {
		out, _ := c.client.Exec("ip", "neigh")
		t.Fatalf("the client's neighbour entry for %s names node %q (neighbours: %s; node MACs %v); want a1 or a2", ip, owner, out, macs)
	}
	t.Logf("http://%s answered %q; announced by %s", ip, body, owner)
	return owner
}

// testLocalPolicy: with externalTrafficPolicy: Local and the only pod on
// a2, a2 announces, the pod sees the client's own address, and a2's
// healthCheckNodePort says 200 while a1's says 503.
func (c *lbCluster) testLocalPolicy(t *testing.T, macs map[string]string) {
	ip := c.lbIP(201)
	svc := c.deploy(t, "local", "a2", 1, v1.ServiceExternalTrafficPolicyLocal, ip)
	var body string
	harness.Eventually(t, deadline, "the client reaches http://"+ip, func() (bool, string) {
		var err error
		body, err = c.get(ip, 2*time.Second)
		return err == nil, fmt.Sprint(err)
	})
	if owner := c.announcer(t, ip, macs); owner != "a2" {
		t.Errorf("%s announced by %q; want a2, the only node with a local endpoint", ip, owner)
	}
	// busybox httpd prints the peer as an IPv4-mapped IPv6 address.
	if f := strings.Fields(body); len(f) != 2 || strings.Trim(strings.TrimPrefix(strings.Trim(f[1], "[]"), "::ffff:"), "[]") != c.client.IP {
		t.Errorf("the backend answered %q; want its name and the client's own address %s", body, c.client.IP)
	}
	port := svc.Spec.HealthCheckNodePort
	if port == 0 {
		t.Fatal("the Local Service has no healthCheckNodePort")
	}
	for node, want := range map[string]string{"a2": "200", "a1": "503"} {
		url := fmt.Sprintf("http://%s:%d/healthz", c.Net.Host(node).IP, port)
		harness.Eventually(t, deadline, "healthCheckNodePort of "+node+" answers "+want, func() (bool, string) {
			out, err := exec.Command("ip", "netns", "exec", c.client.NS, "curl", "-s", "-o", "/dev/stderr", "-w", "%{http_code}", "--max-time", "2", url).CombinedOutput()
			s := string(out)
			return err == nil && strings.HasSuffix(s, want), s
		})
	}
}

// testFailover: the announcing node dies (agent killed with kill -9, cable
// pulled); the other node takes the IP over and the client is served
// again. The gap is logged; `make bench` measures it over 20 kills.
func (c *lbCluster) testFailover(t *testing.T, ip, owner string, macs map[string]string) {
	gap, failures, took := c.killAndMeasureThen(t, ip, owner, func() {
		// The IP moved on gossip's word: the dead node's Ready condition
		// (20 s grace period) has not changed yet.
		n, err := c.kube.CoreV1().Nodes().Get(context.Background(), owner, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady && cond.Status != v1.ConditionTrue {
				t.Errorf("node %s was already %s when the IP moved: the announcer waited for the Node condition, not gossip", owner, cond.Status)
			}
		}
	})
	now := c.announcer(t, ip, macs)
	if now == owner || now == "" || now == excludedNode {
		t.Fatalf("after %s died, %s is announced by %q", owner, ip, now)
	}
	t.Logf("failover %s -> %s: first failed to first successful request %s (%d failed requests), kill to recovery %s",
		owner, now, gap.Round(time.Millisecond), failures, took.Round(time.Millisecond))
	status, err := c.kube.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{})
	if err == nil && len(status.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("the Service status changed under the failover: %+v", status.Status.LoadBalancer)
	}
}

// killAndMeasure kills owner's agent, pulls its cable, and polls ip until
// it answers again; it brings the node back before returning.
func (c *lbCluster) killAndMeasure(t testing.TB, ip, owner string) (gap time.Duration, failures int, took time.Duration) {
	return c.killAndMeasureThen(t, ip, owner, func() {})
}

// killAndMeasureThen is killAndMeasure, calling recovered once the IP
// answers again, before the node comes back.
func (c *lbCluster) killAndMeasureThen(t testing.TB, ip, owner string, recovered func()) (gap time.Duration, failures int, took time.Duration) {
	t.Helper()
	h := c.Net.Host(owner)
	kill := time.Now()
	c.agents[owner].Kill()
	if err := h.Unplug(); err != nil {
		t.Fatal(err)
	}
	gap, failures = c.pollUntilRecovered(t, ip, kill)
	took = time.Since(kill)
	recovered()
	if err := h.Plug(); err != nil {
		t.Fatal(err)
	}
	c.agents[owner].Start(t)
	return gap, failures, took
}
