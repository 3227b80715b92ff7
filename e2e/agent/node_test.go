package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// testKubeletEndpoints: the summary, metrics and health endpoints answer a
// client with a certificate of the cluster CA that may use them, and refuse
// an anonymous one. (The API server's node proxy refuses loopback node
// addresses, which test nodes have, so they are called directly.)
func (c *cluster) testKubeletEndpoints(t *testing.T) {
	ns := c.namespace(t, "stats")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: busy
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'while true; do :; done']
    resources:
      limits: {cpu: 100m}
`)
	c.waitPod(t, ns, "busy", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	get := c.kubeletClient(t)
	if code, out := get("/healthz", true); code != 200 || out != "ok" {
		t.Errorf("healthz: %d %q", code, out)
	}
	if code, _ := get("/healthz", false); code != http.StatusUnauthorized {
		t.Errorf("healthz without a client certificate: %d, want 401", code)
	}
	// CPU rates need two readings.
	get("/stats/summary", true)
	harness.Eventually(t, time.Minute, "the summary reports the pod's CPU and memory", func() (bool, string) {
		_, out := get("/stats/summary", true)
		var sum statsv1alpha1.Summary
		if err := json.Unmarshal([]byte(out), &sum); err != nil {
			return false, err.Error()
		}
		if sum.Node.NodeName != c.node || sum.Node.Memory == nil || sum.Node.Fs == nil {
			return false, "node stats: " + out
		}
		for _, p := range sum.Pods {
			if p.PodRef.Name == "busy" && len(p.Containers) == 1 {
				cpu := p.Containers[0].CPU
				mem := p.Containers[0].Memory
				ok := cpu != nil && cpu.UsageNanoCores != nil && *cpu.UsageNanoCores > 0 && mem != nil && mem.WorkingSetBytes != nil && *mem.WorkingSetBytes > 0
				return ok, out
			}
		}
		return false, "pod missing: " + out
	})
	_, metrics := get("/metrics", true)
	// The earlier steps pulled busybox from the test registry: kubelet's
	// pull histogram counts it.
	for _, want := range []string{"keelson_agent_pod_start_duration_seconds_count", "keelson_agent_pods ", "go_goroutines",
		`kubelet_image_pull_duration_seconds_count{image_size_in_bytes="0-10MB"}`,
		// The busy pod runs: kubelet's counts and the phases see it.
		`kubelet_running_containers{container_state="running"}`, "kubelet_running_pods ",
		`keelson_agent_pods_by_phase{phase="Running"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(metrics, "\nkubelet_running_pods 0\n") {
		t.Errorf("kubelet_running_pods is 0 while the busy pod runs")
	}
}

// kubeletClient returns a GET on the agent's kubelet API, with the admin's
// client certificate or none, verifying the agent by the cluster CA.
func (c *cluster) kubeletClient(t testing.TB) func(path string, withCert bool) (int, string) {
	t.Helper()
	n, err := c.client.CoreV1().Nodes().Get(context.Background(), c.node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pki := filepath.Join(c.server.DataDir, "pki")
	ca, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	return func(path string, withCert bool) (int, string) {
		cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if withCert {
			cfg.Certificates = []tls.Certificate{admin}
		}
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// testOOMKilled: a container exceeding its memory limit is killed by the
// kernel and reported OOMKilled.
func (c *cluster) testOOMKilled(t *testing.T) {
	ns := c.namespace(t, "oom")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: hungry
spec:
  nodeName: `+c.node+`
  restartPolicy: Never
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'dd if=/dev/zero of=/dev/null bs=64M count=1']
    resources:
      limits: {memory: 16Mi}
`)
	p := c.waitPod(t, ns, "hungry", 3*time.Minute, "failed", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
	if s := p.Status.ContainerStatuses[0].State.Terminated; s == nil || s.Reason != "OOMKilled" || s.ExitCode != 137 {
		t.Errorf("terminated %+v, want OOMKilled with exit code 137", s)
	}
}

// testAgentRestart: pods keep running across an agent restart, and the
// restarted agent keeps their logs and status.
func (c *cluster) testAgentRestart(t *testing.T) {
	ns := c.namespace(t, "restart")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: survivor
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done']
`)
	before := c.waitPod(t, ns, "survivor", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	harness.Eventually(t, time.Minute, "the first ticks are logged", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "survivor")
		return strings.HasPrefix(r.Stdout, "tick 0\ntick 1\n"), r.String()
	})
	c.stopAgent()
	time.Sleep(2 * time.Second) // the container keeps writing meanwhile
	c.startAgent(t)
	harness.Eventually(t, 3*time.Minute, "the restarted agent serves logs again, with output written while it was away", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "survivor")
		return r.ExitCode == 0 && strings.Count(r.Stdout, "tick") >= 6 && strings.HasPrefix(r.Stdout, "tick 0\n"), r.String()
	})
	after, err := c.client.CoreV1().Pods(ns).Get(context.Background(), "survivor", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, a := before.Status.ContainerStatuses[0], after.Status.ContainerStatuses[0]
	if a.ContainerID != b.ContainerID || a.RestartCount != 0 || a.State.Running == nil {
		t.Errorf("container after the agent restart %+v, want the same one still running (before: %s)", a, b.ContainerID)
	}
	// The restarted agent still follows the container: new output arrives.
	r := c.server.Kubectl(t, "logs", "-n", ns, "survivor", "--tail", "1")
	harness.Eventually(t, time.Minute, "new output after the restart", func() (bool, string) {
		r2 := c.server.Kubectl(t, "logs", "-n", ns, "survivor", "--tail", "1")
		return r2.Stdout != r.Stdout, r2.String()
	})
}
