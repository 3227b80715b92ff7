package agent

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testVolumesAndEnv: configMap, secret, downwardAPI and the projected
// service-account token as files, environment from fieldRef and
// resourceFieldRef, an emptyDir shared by two containers that also reach
// each other on localhost.
func (c *cluster) testVolumesAndEnv(t *testing.T) {
	ns := c.namespace(t, "volumes")
	c.apply(t, ns, `apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: mounts
  labels:
    tier: backend
spec:
  nodeName: `+c.node+`
  volumes:
  - name: cfg
    configMap: {name: settings}
  - name: sec
    secret: {secretName: creds, defaultMode: 0400}
  - name: info
    downwardAPI:
      items:
      - path: labels
        fieldRef: {fieldPath: metadata.labels}
      - path: mem
        resourceFieldRef: {containerName: reader, resource: limits.memory, divisor: 1Mi}
  - name: shared
    emptyDir: {}
  containers:
  - name: web
    image: `+c.busybox+`
    command: ['sh', '-c', 'mkdir -p /shared/www && echo from-web > /shared/www/index.html && exec httpd -f -p 127.0.0.1:8081 -h /shared/www']
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: reader
    image: `+c.busybox+`
    resources:
      limits: {memory: 64Mi}
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: MEM_MI
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    command:
    - sh
    - -c
    - |
      echo "cfg=$(cat /cfg/greeting)"
      echo "sec=$(cat /sec/password)"
      echo "labels=$(cat /info/labels)"
      echo "mem=$(cat /info/mem)"
      echo "env=$POD_NAME $MEM_MI $GREETING"
      echo "ip=$POD_IP"
      echo "ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
      [ -s /var/run/secrets/kubernetes.io/serviceaccount/token ] && echo token=present
      until wget -q -O /tmp/page http://localhost:8081/index.html; do sleep 0.2; done
      echo "localhost=$(cat /tmp/page)"
      echo "shared=$(cat /shared/www/index.html)"
      sleep 3600
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec}
    - {name: info, mountPath: /info}
    - {name: shared, mountPath: /shared}
`)
	p := c.waitPod(t, ns, "mounts", 3*time.Minute, "running", func(p *v1.Pod) bool { return p.Status.Phase == v1.PodRunning })
	want := strings.Join([]string{
		"cfg=hello", "sec=s3cret", `labels=tier="backend"`, "mem=64", "env=mounts 64 hello", "ip=" + p.Status.PodIP,
		"ns=" + ns, "token=present", "localhost=from-web", "shared=from-web",
	}, "\n") + "\n"
	harness.Eventually(t, 2*time.Minute, "the reader printed every source", func() (bool, string) {
		r := c.server.Kubectl(t, "logs", "-n", ns, "mounts", "-c", "reader")
		return r.Stdout == want, r.String()
	})
	// A ConfigMap update reaches the mounted file.
	cm, err := c.client.CoreV1().ConfigMaps(ns).Get(context.Background(), "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["greeting"] = "updated"
	if _, err := c.client.CoreV1().ConfigMaps(ns).Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 3*time.Minute, "the configMap volume is refreshed", func() (bool, string) {
		r := c.server.Kubectl(t, "exec", "-n", ns, "mounts", "-c", "reader", "--", "cat", "/cfg/greeting")
		return r.Stdout == "updated", r.String()
	})
}

// testImagePullBackOff: a missing image fails to pull, then backs off.
func (c *cluster) testImagePullBackOff(t *testing.T) {
	ns := c.namespace(t, "pull")
	c.apply(t, ns, `apiVersion: v1
kind: Pod
metadata:
  name: missing-image
spec:
  nodeName: `+c.node+`
  containers:
  - name: app
    image: `+c.registry.Host+`/no-such-image:1
`)
	c.waitPod(t, ns, "missing-image", 3*time.Minute, "ImagePullBackOff", func(p *v1.Pod) bool {
		s := p.Status.ContainerStatuses
		return len(s) == 1 && s[0].State.Waiting != nil && s[0].State.Waiting.Reason == "ImagePullBackOff"
	})
	c.expectEvent(t, ns, "missing-image", "Failed", "Failed to pull image")
	c.expectEvent(t, ns, "missing-image", "BackOff", "Back-off pulling image")
}
