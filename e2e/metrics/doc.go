// Package metrics holds the end-to-end tests of resource metrics: a real
// `keelson server` running the metricsserver plugin and a real `keelson
// agent` on loopback running a busy pod. `keelson kubectl top` shows the
// node's and the pod's usage, the metrics API follows RBAC, and the
// agent's /metrics/resource is refused to a token without nodes/metrics.
// They run as root with containerd, runc, the CNI plugins and
// busybox-static installed, and skip otherwise.
package metrics
