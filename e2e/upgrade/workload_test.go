package upgrade

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
)

// web is a Deployment of two busybox httpd pods, one per node, answering
// with their name, behind a NodePort Service.
const web = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: web}
      containers:
      - name: web
        image: ` + nodeagent.BusyboxImage + `
        command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"]
        ports:
        - containerPort: 80
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 80
`

// workloadNS holds the Deployment and the writer's ConfigMaps.
const workloadNS = "default"

func (u *rollout) kubectl() harness.Kubectl {
	return harness.Kubectl{Bin: u.cur, Kubeconfig: filepath.Join(u.c.Servers[0].DataDir(), "admin.kubeconfig")}
}

// deploy creates the Deployment and its Service, waits until every node's
// NodePort answers, and returns the port.
func (u *rollout) deploy() string {
	t := u.t
	t.Helper()
	kube := u.c.Servers[0].Clientset(t)
	harness.Eventually(t, converge, "the default ServiceAccount", func() (bool, string) {
		_, err := kube.CoreV1().ServiceAccounts(workloadNS).Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil, errText(err)
	})
	k := u.kubectl()
	k.MustIn(t, web, "apply", "-n", workloadNS, "-f", "-")
	port := strings.TrimSpace(k.Must(t, "get", "svc", "-n", workloadNS, "web", "-o", "jsonpath={.spec.ports[0].nodePort}"))
	for _, name := range agentNames {
		p := newProber(u.c.Net.Host(name).IP, port)
		harness.Eventually(t, converge, "the Service on "+p.url, func() (bool, string) {
			err := get(context.Background(), probeClient, p.url)
			return err == nil, errText(err)
		})
	}
	return port
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// podState is what an adopted pod keeps across its agent's upgrade.
type podState struct {
	uid      string
	node     string
	restarts int32
}

// pods is the Deployment's pods by name.
func (u *rollout) pods() map[string]podState {
	t := u.t
	t.Helper()
	var out map[string]podState
	harness.Eventually(t, converge, "two ready web pods", func() (bool, string) {
		out = map[string]podState{}
		l, err := u.upgradedOrFirst().Clientset(t).CoreV1().Pods(workloadNS).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, err.Error()
		}
		for _, p := range l.Items {
			if !podReady(p) || p.DeletionTimestamp != nil {
				return false, p.Name + " not ready"
			}
			var restarts int32
			for _, cs := range p.Status.ContainerStatuses {
				restarts += cs.RestartCount
			}
			out[p.Name] = podState{uid: string(p.UID), node: p.Spec.NodeName, restarts: restarts}
		}
		return len(out) == 2, "pods: " + strings.Join(keys(out), ",")
	})
	return out
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func keys(m map[string]podState) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// checkPodsAdopted fails unless the same pods (same UIDs, nodes and
// restart counts) serve after the upgrade: the agents adopted their
// running containers instead of restarting them.
func (u *rollout) checkPodsAdopted(before map[string]podState) {
	t := u.t
	t.Helper()
	after := u.pods()
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("pod %s (on %s) is gone after the upgrade; pods now: %v", name, b.node, after)
		case a != b:
			t.Errorf("pod %s changed across the upgrade: before %+v, after %+v (restarted by the new agent?)", name, b, a)
		}
	}
}

// traffic is the writer and one prober per node, running until ctx ends.
type traffic struct {
	w      *writer
	probes map[string]*prober
	wg     sync.WaitGroup
}

func (u *rollout) startTraffic(ctx context.Context, port string) *traffic {
	t := u.t
	t.Helper()
	tr := &traffic{w: &writer{servers: u.c.Servers, ns: workloadNS}, probes: map[string]*prober{}}
	for _, s := range u.c.Servers {
		tr.w.clients = append(tr.w.clients, kubernetes.Interface(s.Clientset(t)))
	}
	for _, name := range agentNames {
		tr.probes[name] = newProber(u.c.Net.Host(name).IP, port)
	}
	tr.wg.Add(1 + len(tr.probes))
	go func() { defer tr.wg.Done(); tr.w.run(ctx) }()
	for _, p := range tr.probes {
		go func() { defer tr.wg.Done(); p.run(ctx) }()
	}
	return tr
}

func (tr *traffic) wait() {
	tr.wg.Wait()
	now := time.Now()
	tr.w.finish(now)
	for _, p := range tr.probes {
		p.finish(now)
	}
}

func (tr *traffic) describeProbes() string {
	var parts []string
	for _, name := range agentNames {
		parts = append(parts, name+": "+tr.probes[name].String())
	}
	return strings.Join(parts, "; ")
}

// checkTraffic fails on an outage longer than maxGap of the API or of a
// node's NodePort, and unless every acknowledged write is readable
// through every server.
func (u *rollout) checkTraffic(tr *traffic) {
	t := u.t
	t.Helper()
	if tr.w.longest > maxGap || tr.w.ok == 0 {
		t.Errorf("writes through the API: %s; want no gap over %s", tr.w.String(), maxGap)
	}
	for name, p := range tr.probes {
		if p.longest > maxGap || p.ok == 0 {
			t.Errorf("the Service through node %s: %s; want no gap over %s", name, p.String(), maxGap)
		}
	}
	acked := tr.w.ackedNames()
	for _, s := range u.c.Servers {
		l, err := s.Clientset(t).CoreV1().ConfigMaps(workloadNS).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Errorf("listing the written ConfigMaps through %s: %v", s.Name, err)
			continue
		}
		have := map[string]bool{}
		for _, cm := range l.Items {
			have[cm.Name] = true
		}
		var lost []string
		for _, name := range acked {
			if !have[name] {
				lost = append(lost, name)
			}
		}
		if len(lost) > 0 {
			t.Errorf("%d of %d acknowledged writes missing through %s: %v", len(lost), len(acked), s.Name, lost)
		}
	}
	t.Logf("%d acknowledged writes, all readable through every server", len(acked))
}
