// Package autoscaling holds the end-to-end tests of the
// horizontalpodautoscaler plugin: one keelson server running its own agent
// (real containers on containerd burning real CPU), the workload
// controllers, the scheduler and the metricsserver plugin serving
// metrics.k8s.io from the agent's measurements. Run it as root with
// `make build && flock /tmp/keelson-e2e.lock /work/wt/gotest.sh . -run TestHPA -count=1 -v ./e2e/autoscaling/`.
package autoscaling
