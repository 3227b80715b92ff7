package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/nodeagent"
)

// webSet is a StatefulSet of two with its governing headless Service: the
// seed's stable network identity example.
const webSet = `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: ` + nodeagent.BusyboxImage + `
        command: [sh, -c, "mkdir -p /www && exec httpd -f -p 80 -h /www"]
        readinessProbe:
          tcpSocket: {port: 80}
          periodSeconds: 1
`

// testStatefulSetDNS: on real agents, a StatefulSet's pods start in order
// (web-1 only once web-0 is ready) and each resolves as
// <pod>.<service>.<namespace>.svc.cluster.local; a replaced pod keeps its
// name, and the name follows it to its new address.
func (s *serviceScenario) testStatefulSetDNS(t *testing.T) {
	s.c.kubectl(t).MustIn(t, webSet, "apply", "-n", s.ns, "-f", "-")
	pods := s.c.waitPods(t, s.ns, "app=web", "web-0 and web-1 running and ready", func(pods []v1.Pod) bool {
		return len(pods) == 2 && running(&pods[0]) && running(&pods[1])
	})
	if readyAt := readySince(&pods[0]); pods[1].CreationTimestamp.Time.Before(readyAt.Time) {
		t.Errorf("web-1 was created at %s, before web-0 was ready at %s", pods[1].CreationTimestamp, readyAt)
	}
	resolves := func(pod v1.Pod) {
		t.Helper()
		name := fmt.Sprintf("%s.web.%s.svc.cluster.local", pod.Name, s.ns)
		eventually(t, name+" resolves to "+pod.Status.PodIP, func() (bool, string) {
			out, err := s.exec(t, "nslookup", name)
			return err == nil && strings.Contains(out, pod.Status.PodIP), fmt.Sprint(out, err)
		})
	}
	resolves(pods[0])
	resolves(pods[1])

	old := pods[0].UID
	if err := s.c.kube(t).CoreV1().Pods(s.ns).Delete(context.Background(), "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	pods = s.c.waitPods(t, s.ns, "app=web", "web-0 replaced and ready", func(pods []v1.Pod) bool {
		return len(pods) == 2 && pods[0].UID != old && running(&pods[0])
	})
	resolves(pods[0])
}

// readySince is when the pod last became ready.
func readySince(p *v1.Pod) metav1.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.LastTransitionTime
		}
	}
	return metav1.Time{}
}
