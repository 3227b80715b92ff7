package loadbalancer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/plugins/builtin/localcloud"
)

// backend is a Deployment of busybox httpd pods pinned to one node, each
// answering /cgi-bin/who with its name and the address the request came
// from, and its LoadBalancer Service, asking the cloud provider for the
// address ip (none: any).
func backend(name, node string, replicas int, policy v1.ServiceExternalTrafficPolicy, ip string) string {
	annotations := "{}"
	if ip != "" {
		annotations = fmt.Sprintf("{%s: %q}", localcloud.AnnotationIPs, ip)
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
spec:
  selector:
    matchLabels: {app: %[1]s}
  replicas: %[3]d
  template:
    metadata:
      labels: {app: %[1]s}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {kubernetes.io/hostname: %[2]s}
      containers:
      - name: web
        image: %[5]s
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          cat > /www/cgi-bin/who <<'EOF'
          #!/bin/sh
          echo "Content-Type: text/plain"
          echo
          echo "$(hostname) $REMOTE_ADDR"
          EOF
          chmod +x /www/cgi-bin/who
          exec httpd -f -p 80 -h /www
        ports:
        - containerPort: 80
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  annotations: %[6]s
spec:
  type: LoadBalancer
  externalTrafficPolicy: %[4]s
  selector: {app: %[1]s}
  ports:
  - port: 80
`, name, node, replicas, policy, nodeagent.BusyboxImage, annotations)
}

// deploy applies a backend whose Service asks the built-in cloud
// provider for the pool address ip, and waits for its pods to be ready
// and for the Service's status to hold ip and nothing else.
func (c *lbCluster) deploy(t testing.TB, name, node string, replicas int, policy v1.ServiceExternalTrafficPolicy, ip string) *v1.Service {
	t.Helper()
	ctx := context.Background()
	c.kubectl(t).MustIn(t, backend(name, node, replicas, policy, ip), "apply", "-n", "default", "-f", "-")
	harness.Eventually(t, deadline, fmt.Sprintf("%d ready %s pods on %s", replicas, name, node), func() (bool, string) {
		pods, err := c.kube.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, err.Error()
		}
		n := 0
		var states []string
		for _, p := range pods.Items {
			states = append(states, fmt.Sprintf("%s@%s:%s", p.Name, p.Spec.NodeName, p.Status.Phase))
			for _, cond := range p.Status.Conditions {
				if cond.Type == v1.PodReady && cond.Status == v1.ConditionTrue && p.DeletionTimestamp == nil {
					n++
				}
			}
		}
		return n == replicas, strings.Join(states, " ")
	})
	var svc *v1.Service
	harness.Eventually(t, deadline, "status of Service "+name+" holds "+ip, func() (bool, string) {
		s, err := c.kube.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		svc = s
		in := s.Status.LoadBalancer.Ingress
		return len(in) == 1 && in[0].IP == ip, fmt.Sprintf("status %+v", s.Status.LoadBalancer)
	})
	return svc
}

// pollUntilRecovered polls ip from the client with short requests, back
// to back, from the fault at after on. It returns the gap between the
// first failed request's start and the end of the first successful one
// after it, and how many failed; 0 when nothing failed for 15 s.
func (c *lbCluster) pollUntilRecovered(t testing.TB, ip string, after time.Time) (gap time.Duration, failures int) {
	t.Helper()
	var firstFail time.Time
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		start := time.Now()
		_, err := c.get(ip, 300*time.Millisecond)
		done := time.Now()
		switch {
		case err != nil:
			failures++
			if firstFail.IsZero() {
				firstFail = start
			}
		case !firstFail.IsZero():
			return done.Sub(firstFail), failures
		case done.Sub(after) > 15*time.Second:
			return 0, failures
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("http://%s never answered again after the fault (%d failures)", ip, failures)
	return 0, 0
}
