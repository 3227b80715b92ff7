package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// testSecurityContext: the agent refuses what kubelet refuses (a root image
// under runAsNonRoot, an unsafe sysctl) and applies what a pod asks for (a
// safe sysctl, the runtime's seccomp profile, a subPath of a configMap key).
func (c *cluster) testSecurityContext(t *testing.T) {
	ns := c.namespace(t, "security")
	// The pods here are refused by the node, not by Pod Security admission.
	patch := `{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`
	if _, err := c.client.CoreV1().Namespaces().Patch(context.Background(), ns, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c.apply(t, ns, `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot
spec:
  nodeName: `+c.node+`
  securityContext: {runAsNonRoot: true}
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: unsafe-sysctl
spec:
  nodeName: `+c.node+`
  securityContext:
    sysctls: [{name: kernel.msgmax, value: "65536"}]
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
---
apiVersion: v1
kind: Pod
metadata:
  name: confined
spec:
  nodeName: `+c.node+`
  securityContext:
    runAsNonRoot: true
    runAsUser: 1000
    seccompProfile: {type: RuntimeDefault}
    sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "80"}]
  volumes:
  - name: cfg
    configMap: {name: settings}
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'cat /proc/sys/net/ipv4/ip_unprivileged_port_start; grep ^Seccomp: /proc/self/status; cat /etc/greeting; echo; sleep 3600']
    volumeMounts: [{name: cfg, mountPath: /etc/greeting, subPath: greeting}]
`)
	c.waitPod(t, ns, "nonroot", 3*time.Minute, "CreateContainerConfigError for a root image", func(p *v1.Pod) bool {
		for _, s := range p.Status.ContainerStatuses {
			if w := s.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				return strings.Contains(w.Message, `container has runAsNonRoot and image will run as root (pod: "nonroot_`+ns+`(`)
			}
		}
		return false
	})
	p := c.waitPod(t, ns, "unsafe-sysctl", 3*time.Minute, "rejected by the node", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodFailed })
	if p.Status.Reason != "SysctlForbidden" || p.Status.Message != `Pod was rejected: forbidden sysctl: "kernel.msgmax" not allowlisted` {
		t.Errorf("unsafe sysctl pod: reason %q message %q, want SysctlForbidden and kubelet's message", p.Status.Reason, p.Status.Message)
	}
	c.expectEvent(t, ns, "unsafe-sysctl", "SysctlForbidden", `forbidden sysctl: "kernel.msgmax" not allowlisted`)
	c.waitPod(t, ns, "confined", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	// By now the agent has synced the failed pod again: it stays as
	// kubelet leaves a rejected pod, with no container statuses.
	p, err := c.client.CoreV1().Pods(ns).Get(context.Background(), "unsafe-sysctl", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Reason != "SysctlForbidden" || len(p.Status.ContainerStatuses) != 0 {
		t.Errorf("rejected pod later: %s reason %q, want SysctlForbidden and no container statuses", describe(p), p.Status.Reason)
	}
	harness.Eventually(t, time.Minute, "the confined pod reports its sysctl, seccomp mode and subPath file", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "confined")
		want := "80\nSeccomp:\t2\nhello\n"
		return r.ExitCode == 0 && r.Stdout == want, r.String()
	})
}
