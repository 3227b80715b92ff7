package host

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPluginMetricsRelabelled(t *testing.T) {
	job := `# HELP workqueue_depth Current depth of workqueue
# TYPE workqueue_depth gauge
workqueue_depth{name="job"} 3
# HELP workqueue_work_duration_seconds How long processing an item takes.
# TYPE workqueue_work_duration_seconds histogram
workqueue_work_duration_seconds_bucket{name="job",le="0.1"} 4
workqueue_work_duration_seconds_bucket{name="job",le="+Inf"} 5
workqueue_work_duration_seconds_sum{name="job"} 0.9
workqueue_work_duration_seconds_count{name="job"} 5
`
	own := `# TYPE requests_total counter
requests_total{plugin="x"} 7
`
	c := NewMetricsCollector(func(context.Context) []PluginMetrics {
		return []PluginMetrics{
			{Name: "job", Text: []byte(job)},
			{Name: "ingress", Text: []byte(own)},
			{Name: "broken", Text: []byte("this is { not metrics\n")},
			{Name: "hung", Err: errors.New("context deadline exceeded")},
			// Another client version: the same family with other help text
			// (served under job's), and one of another type than ingress's
			// (left out).
			{Name: "other", Text: []byte("# HELP workqueue_depth Depth.\n# TYPE workqueue_depth gauge\nworkqueue_depth{name=\"o\"} 1\n" +
				"# TYPE requests_total gauge\nrequests_total 2\n")},
		}
	}, slog.New(slog.DiscardHandler))
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `# HELP keelson_plugin_requests_total 
# TYPE keelson_plugin_requests_total counter
keelson_plugin_requests_total{exported_plugin="x",plugin="ingress"} 7
# HELP keelson_plugin_workqueue_depth Current depth of workqueue
# TYPE keelson_plugin_workqueue_depth gauge
keelson_plugin_workqueue_depth{name="job",plugin="job"} 3
keelson_plugin_workqueue_depth{name="o",plugin="other"} 1
# HELP keelson_plugin_workqueue_work_duration_seconds How long processing an item takes.
# TYPE keelson_plugin_workqueue_work_duration_seconds histogram
keelson_plugin_workqueue_work_duration_seconds_bucket{name="job",plugin="job",le="0.1"} 4
keelson_plugin_workqueue_work_duration_seconds_bucket{name="job",plugin="job",le="+Inf"} 5
keelson_plugin_workqueue_work_duration_seconds_sum{name="job",plugin="job"} 0.9
keelson_plugin_workqueue_work_duration_seconds_count{name="job",plugin="job"} 5
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
