package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// testKubeletEndpoints: the summary, metrics and health endpoints answer
// through the API server's node proxy (mutual TLS to the agent).
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
	base := "/api/v1/nodes/" + c.node + "/proxy"
	if out := c.server.MustKubectl(t, "get", "--raw", base+"/healthz"); out != "ok" {
		t.Errorf("healthz: %q", out)
	}
	// CPU rates need two readings.
	c.server.MustKubectl(t, "get", "--raw", base+"/stats/summary")
	eventually(t, time.Minute, "the summary reports the pod's CPU and memory", func() (bool, string) {
		out := c.server.MustKubectl(t, "get", "--raw", base+"/stats/summary")
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
	metrics := c.server.MustKubectl(t, "get", "--raw", base+"/metrics")
	for _, want := range []string{"keelson_agent_pod_start_duration_seconds_count", "keelson_agent_pods ", "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
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
	c.stopAgent()
	time.Sleep(2 * time.Second) // the container keeps writing meanwhile
	c.startAgent(t)
	eventually(t, 3*time.Minute, "the restarted agent serves logs again, with output written while it was away", func() (bool, string) {
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
	eventually(t, time.Minute, "new output after the restart", func() (bool, string) {
		r2 := c.server.Kubectl(t, "logs", "-n", ns, "survivor", "--tail", "1")
		return r2.Stdout != r.Stdout, r2.String()
	})
}
