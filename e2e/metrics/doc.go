// Package metrics holds the end-to-end tests of metrics: a real `keelson
// server` (every built-in plugin, the metricsserver plugin among them) and
// a real `keelson agent`, each in its own network namespace, the agent
// running a busy pod. `keelson kubectl top` shows the node's and the pod's
// usage, the metrics API follows RBAC, the agent's /metrics/resource is
// refused to a token without nodes/metrics, and the server's /metrics
// carries the store's metrics, which move with writes.
// They run as root with containerd, runc, the CNI plugins and
// busybox-static installed, and skip otherwise.
package metrics
