// Package jobs holds the end-to-end tests of the job, cronjob and
// ttlafterfinished plugins: one keelson server running its own agent
// (real containers on containerd) and the scheduler, so Jobs run real
// pods to completion. Run it as root with `make build && flock
// /tmp/keelson-e2e.lock /work/wt/gotest.sh ./e2e/jobs/ -count=1 -v`.
package jobs
