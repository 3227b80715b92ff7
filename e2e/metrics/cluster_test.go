package metrics

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/internal/testnet"
)

// waitTimeout bounds every wait; a hang guard on a busy shared machine,
// not a timing claim.
const waitTimeout = 3 * time.Minute

// agentName is the node agent's host and Node name.
const agentName = "m1"

// cluster is one server (every built-in plugin, metricsserver among them,
// on its leader) and one agent, each in its own network namespace: the
// metrics API's endpoint is the server's bridge address, which an
// EndpointSlice may hold (a loopback one it may not).
type cluster struct {
	*ha.Cluster
	server *ha.Server
	client kubernetes.Interface
	node   string
	nodeIP string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{node: agentName}
	c.Cluster = ha.NewCluster(t, ha.Options{Servers: 1, APIServer: true, Hosts: []string{agentName},
		Args: []string{"--cluster-cidr", cidr}})
	c.server = c.Servers[0]
	c.client = c.server.Clientset(t)
	h := c.Net.Host(agentName)
	c.nodeIP = h.IP
	a := nodeagent.New(t, nodeagent.Options{Name: agentName, NetNS: h.NS, Args: []string{
		"--server", "https://" + net.JoinHostPort(c.server.IP, "6443"),
		"--token-file", c.AgentTokenFile(t),
		"--node-ip", h.IP,
		"--kubelet-address", h.IP,
		"--cluster-cidr", cidr,
	}})
	a.Start(t)
	t.Cleanup(func() { c.deleteAllPods() })
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

// kubectl runs `keelson kubectl` as the admin.
func (c *cluster) kubectl(t testing.TB) harness.Kubectl {
	return harness.Kubectl{Bin: harness.KeelsonBin(t), Kubeconfig: filepath.Join(c.server.DataDir(), "admin.kubeconfig")}
}

// restConfig is the admin's, to the server's bridge address.
func (c *cluster) restConfig(t testing.TB) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.server.DataDir(), "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host = "https://" + net.JoinHostPort(c.server.IP, "6443")
	return cfg
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

// namespace creates a namespace and waits for its default ServiceAccount.
func (c *cluster) namespace(t testing.TB, name string) string {
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

// shellPod runs script in busybox, labelled app=name, and waits for it to
// run.
func (c *cluster) shellPod(t testing.TB, ns, name, container, script string) {
	t.Helper()
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: v1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []v1.Container{{Name: container, Image: nodeagent.BusyboxImage, ImagePullPolicy: v1.PullNever,
				Command: []string{"sh", "-c", script}}},
		},
	}
	if _, err := c.client.CoreV1().Pods(ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	harness.Eventually(t, waitTimeout, fmt.Sprintf("pod %s/%s runs", ns, name), func() (bool, string) {
		p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == v1.PodRunning, string(p.Status.Phase)
	})
}

// kubeletGet calls the agent's kubelet API with the given bearer token
// (the admin's certificate when empty) and returns the status and body.
func (c *cluster) kubeletGet(t *testing.T, path, token string) (int, string) {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(c.server.DataDir(), "pki")
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if token == "" {
		admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{admin}
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	url := fmt.Sprintf("https://%s%s", net.JoinHostPort(c.nodeIP, fmt.Sprint(n.Status.DaemonEndpoints.KubeletEndpoint.Port)), path)
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
