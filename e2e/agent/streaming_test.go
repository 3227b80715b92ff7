package agent

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
)

// testExec: kubectl exec runs a command in the pod, with its input, output
// and exit code.
func (c *cluster) testExec(t *testing.T) {
	ns := c.namespace(t, "exec")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sleep', '3600']
`)
	c.waitPod(t, ns, "shell", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	r := c.server.Kubectl(t, "exec", "-n", ns, "shell", "--", "sh", "-c", "hostname; echo oops >&2; exit 3")
	if r.ExitCode != 3 || r.Stdout != "shell\n" || !strings.Contains(r.Stderr, "oops") {
		t.Errorf("kubectl exec: %s\nwant exit 3, the pod's hostname on stdout and oops on stderr", r)
	}
	r = c.server.KubectlIn(t, "line one\nline two\n", "exec", "-i", "-n", ns, "shell", "--", "wc", "-l")
	if r.ExitCode != 0 || strings.TrimSpace(r.Stdout) != "2" {
		t.Errorf("kubectl exec -i: %s\nwant 2 lines counted", r)
	}
}

// testPortForward: kubectl port-forward reaches a port of the pod.
func (c *cluster) testPortForward(t *testing.T) {
	ns := c.namespace(t, "portforward")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  nodeName: `+c.node+`
  containers:
  - name: httpd
    image: `+c.busybox+`
    command: ['sh', '-c', 'mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www']
`)
	c.waitPod(t, ns, "web", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	port := harness.FreePort(t)
	pf := c.server.StartKubectl(t, "port-forward", "-n", ns, "pod/web", fmt.Sprintf("%d:8080", port))
	pf.WaitLine(t, fmt.Sprintf("Forwarding from 127.0.0.1:%d -> 8080", port), time.Minute)
	// The server listens on the pod's loopback only: reaching it proves the
	// forward runs inside the pod's network namespace.
	harness.Eventually(t, time.Minute, "GET through the forwarded port", func() (bool, string) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/index.html")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && string(b) == "hello from the pod\n", fmt.Sprintf("%d %q", resp.StatusCode, b)
	})
}

// testLogsOptions: --tail, --timestamps, --previous and -f.
func (c *cluster) testLogsOptions(t *testing.T) {
	ns := c.namespace(t, "logs")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  nodeName: `+c.node+`
  volumes:
  - name: state
    emptyDir: {}
  containers:
  - name: app
    image: `+c.busybox+`
    command: ['sh', '-c', 'for i in 1 2 3 4 5; do echo line $i; done; if [ -f /state/ran ]; then exec sleep 3600; fi; touch /state/ran; exit 1']
    volumeMounts: [{name: state, mountPath: /state}]
`)
	// The first run exits 1 and is restarted: --previous shows it.
	c.waitPod(t, ns, "chatty", 3*time.Minute, "restarted once", func(p *v1.Pod) bool {
		s := p.Status.ContainerStatuses
		return len(s) == 1 && s[0].RestartCount >= 1 && s[0].State.Running != nil
	})
	r := c.server.Kubectl(t, "logs", "-n", ns, "chatty", "--previous")
	if r.Stdout != "line 1\nline 2\nline 3\nline 4\nline 5\n" {
		t.Errorf("--previous: %s", r)
	}
	harness.Eventually(t, time.Minute, "--tail 2", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "chatty", "--tail", "2")
		return r.Stdout == "line 4\nline 5\n", r.String()
	})
	r = c.server.Kubectl(t, "logs", "-n", ns, "chatty", "--tail", "1", "--timestamps")
	ts, line, _ := strings.Cut(strings.TrimSpace(r.Stdout), " ")
	if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || line != "line 5" {
		t.Errorf("--timestamps: %s", r)
	}
	// -f streams what the container writes while it runs.
	f := c.server.StartKubectl(t, "logs", "-f", "-n", ns, "chatty", "--tail", "0")
	time.Sleep(time.Second) // let the follow start before writing
	c.server.MustKubectl(t, "exec", "-n", ns, "chatty", "--", "sh", "-c", "echo followed > /proc/1/fd/1")
	f.WaitLine(t, "followed", time.Minute)
}

// testAttach: kubectl attach streams a running container's output.
func (c *cluster) testAttach(t *testing.T) {
	ns := c.namespace(t, "attach")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.busybox+`
    stdin: true
    command: ['sh', '-c', 'while read line; do echo "got $line"; done']
`)
	c.waitPod(t, ns, "ticker", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	// Input goes to the container's stdin, its answer comes back.
	a := c.server.StartKubectlIn(t, "ping\n", "attach", "-i", "-n", ns, "ticker")
	a.WaitLine(t, "got ping", time.Minute)
}
