package pods

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestProbeMetrics(t *testing.T) {
	m := NewProbeMetrics()
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "u1"}}
	m.observe(pod, "app", readiness, true, 10*time.Millisecond)
	m.observe(pod, "app", readiness, true, 10*time.Millisecond)
	m.observe(pod, "app", liveness, false, time.Second)
	want := `# HELP prober_probe_total [BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.
# TYPE prober_probe_total counter
prober_probe_total{container="app",namespace="default",pod="web",pod_uid="u1",probe_type="Liveness",result="failed"} 1
prober_probe_total{container="app",namespace="default",pod="web",pod_uid="u1",probe_type="Readiness",result="successful"} 2
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want), "prober_probe_total"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(m.Registry); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	m.forget(pod, "app", liveness)
	if n := testutil.CollectAndCount(m.total); n != 1 {
		t.Errorf("%d series after the liveness probe stopped, want 1 (readiness)", n)
	}
	var none *ProbeMetrics
	none.observe(pod, "app", readiness, true, 0) // metrics off: no panic
}
