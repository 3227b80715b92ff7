// Package workloads holds the integration tests of the workload
// controllers (ReplicaSet, ReplicationController, Deployment, StatefulSet,
// DaemonSet, disruption budgets, pod GC) against a
// real `keelson server` whose plugin host runs them as plugin processes:
// the seed's manifests are walked through kubectl and client-go while the
// tests play the kubelet's part in pod status (there are no nodes yet). The package has no non-test code; run it with
// `make build && go test ./e2e/workloads/ -count=1 -v`.
package workloads
