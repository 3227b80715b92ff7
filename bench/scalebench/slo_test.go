package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

const requestMetrics = `# HELP apiserver_request_duration_seconds [STABLE] Response latency.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="POST",version="v1",le="0.1"} 90
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="POST",version="v1",le="1"} 98
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="POST",version="v1",le="+Inf"} 100
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="POST",version="v1"} 30
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="POST",version="v1"} 100
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="0.1"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="1"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1",le="+Inf"} 10
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 0.3
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 10
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1",le="0.1"} 0
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1",le="1"} 0
apiserver_request_duration_seconds_bucket{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1",le="+Inf"} 4
apiserver_request_duration_seconds_sum{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 400
apiserver_request_duration_seconds_count{component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="WATCH",version="v1"} 4
`

func TestQuantileInterpolatesLikePrometheus(t *testing.T) {
	h := histogram{Bounds: []float64{0.1, 1, math.Inf(1)}, Cum: []float64{90, 98, 100}}
	for _, tt := range []struct{ q, want float64 }{
		{0.5, 0.1 * 50 / 90},      // inside the first bucket, from 0
		{0.9, 0.1},                // at its upper edge
		{0.94, 0.1 + 0.9*4.0/8.0}, // halfway through the second
		{0.99, 1},                 // in +Inf: the highest finite bound
	} {
		if got := h.Quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Quantile(%g) = %g, want %g", tt.q, got, tt.want)
		}
	}
	if got := (histogram{}).Quantile(0.99); got != 0 {
		t.Errorf("empty histogram quantile = %g, want 0", got)
	}
}

func TestCallsFromTwoScrapes(t *testing.T) {
	sc, err := parseScrape(strings.NewReader(requestMetrics))
	if err != nil {
		t.Fatal(err)
	}
	after, err := sc.histograms("apiserver_request_duration_seconds", requestLabels...)
	if err != nil {
		t.Fatal(err)
	}
	// Before the load, half the POSTs had been made, all fast.
	before := map[string]histogram{"POST pods  namespace": {Bounds: []float64{0.1, 1, math.Inf(1)}, Cum: []float64{50, 50, 50}}}
	// Two servers: the same scrape twice counts every call twice.
	delta, err := histDelta([]map[string]histogram{before}, []map[string]histogram{after, after})
	if err != nil {
		t.Fatal(err)
	}
	cs := calls(delta)
	if len(cs) != 2 {
		t.Fatalf("calls = %+v, want POST pods and PATCH pods/status (WATCH left out)", cs)
	}
	if cs[0].Name() != "PATCH pods/status (resource)" {
		t.Errorf("first call = %s, want PATCH pods/status (resource), sorted by name", cs[0].Name())
	}
	post := cs[1]
	if post.Name() != "POST pods (namespace)" || post.Class != classMutating || post.Count != 150 {
		t.Errorf("second call = %+v, want 150 POST pods (namespace), mutating", post)
	}
	// 150 calls: 130 under 0.1 s, 16 under 1 s, 4 slower: p99 falls in +Inf.
	if post.P99 != 1 || post.P50 >= 0.1 {
		t.Errorf("POST pods p50 %g p99 %g, want p50 under 0.1 and p99 1", post.P50, post.P99)
	}
}

func TestSLOTableJudgesEachSide(t *testing.T) {
	good := sloFacts{
		Calls: []call{
			{Verb: "POST", Resource: "pods", Scope: "namespace", Class: classMutating, Count: 10, P99: 0.2},
			{Verb: "GET", Resource: "pods", Scope: "resource", Class: classRead, Count: 10, P99: 0.05},
			{Verb: "LIST", Resource: "pods", Scope: "cluster", Class: classList, Count: 3, P99: 2},
		},
		Startup: startup{Pods: 100, Total: percentiles{P99: 2 * time.Second}}, PluginRestarts: 0,
	}
	bad := sloFacts{
		Calls: []call{
			{Verb: "POST", Resource: "pods", Scope: "namespace", Class: classMutating, Count: 10, P99: 0.2},
			{Verb: "PATCH", Resource: "pods/status", Scope: "resource", Class: classMutating, Count: 10, P99: 1.5},
			{Verb: "LIST", Resource: "pods", Scope: "cluster", Class: classList, Count: 3, P99: 31},
		},
		Startup: startup{Pods: 100, Total: percentiles{P99: 6 * time.Second}}, LeaderChanges: 1, PluginRestarts: -1, ProcessesAlive: false,
	}
	rows := sloTable([]sloFacts{good, bad})
	if len(rows) != len(sloNames) {
		t.Fatalf("%d rows, want %d", len(rows), len(sloNames))
	}
	for i, r := range rows {
		if len(r.Sides) != 2 {
			t.Fatalf("row %q has %d sides", r.SLO, len(r.Sides))
		}
		if !r.Sides[0].OK {
			t.Errorf("good side misses %q: %s", r.SLO, r.Sides[0].Value)
		}
		if r.Sides[1].OK {
			t.Errorf("bad side meets %q (row %d): %s", r.SLO, i, r.Sides[1].Value)
		}
	}
	if v := rows[0].Sides[1].Value; !strings.Contains(v, "PATCH pods/status") {
		t.Errorf("mutating verdict %q does not name the worst call", v)
	}
	if v := rows[1].Sides[1].Value; v != "no calls" {
		t.Errorf("read verdict without reads = %q, want no calls", v)
	}
}

func TestSchedThroughput(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var binds []time.Time
	for i := range 20 { // 20 binds over 1.9 s: 15 in the first second
		d := time.Duration(i) * 60 * time.Millisecond
		if i >= 15 {
			d = time.Second + time.Duration(i-15)*225*time.Millisecond
		}
		binds = append(binds, t0.Add(d))
	}
	got := schedThroughput(binds)
	if got.Pods != 20 || got.PeakPerSec != 15 {
		t.Errorf("throughput = %+v, want 20 pods, peak 15 in one second", got)
	}
	if math.Abs(got.AvgPerSec-20/1.9) > 1e-9 {
		t.Errorf("avg = %g, want %g", got.AvgPerSec, 20/1.9)
	}
}

func TestPacerSpacesUnitsAtRate(t *testing.T) {
	t0 := time.Unix(0, 0)
	p := newPacer(10, t0)
	for _, tt := range []struct {
		n    int
		want time.Duration
	}{{5, 0}, {30, 500 * time.Millisecond}, {1, 3500 * time.Millisecond}} {
		if got := p.due(tt.n).Sub(t0); got != tt.want {
			t.Errorf("due(%d) = +%v, want +%v", tt.n, got, tt.want)
		}
	}
}

func TestPluginProcessesReplaced(t *testing.T) {
	before := map[string]int{"scheduler": 10, "deployment": 11, "replicaset": 12}
	after := map[string]int{"scheduler": 10, "deployment": 21}
	if got := relaunched(before, after); got != 2 {
		t.Errorf("relaunched = %d, want 2 (deployment replaced, replicaset gone)", got)
	}
	for cmd, want := range map[string]string{
		"/tmp/x/s2/bin/abc/keelson-plugins endpointslice --config x": "endpointslice",
		"/usr/bin/keelson plugin scheduler":                          "scheduler",
	} {
		if got := pluginName(cmd); got != want {
			t.Errorf("pluginName(%q) = %q, want %q", cmd, got, want)
		}
	}
	v := sloVerdicts(sloFacts{PluginRestarts: 0, PluginsRelaunched: 3})
	if last := v[len(v)-1]; last.OK || !strings.Contains(last.Value, "3 processes replaced") {
		t.Errorf("plugin verdict with 3 replaced = %+v, want missed", last)
	}
}
