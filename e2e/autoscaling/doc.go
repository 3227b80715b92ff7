// Package autoscaling holds the end-to-end tests of the
// horizontalpodautoscaler plugin: one keelson server (every built-in
// plugin: the workload controllers, the scheduler, metricsserver serving
// metrics.k8s.io from the agent's measurements) and one agent running real
// containers on containerd that burn real CPU, each in its own network
// namespace. Run it as root with `make build && go test ./e2e/autoscaling/
// -count=1 -v` (about 4 minutes a test).
package autoscaling
