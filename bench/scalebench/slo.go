package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/latency"
)

// The request classes of Kubernetes' API call latency SLO.
const (
	classMutating = "mutating"
	classRead     = "read"
	classList     = "list"
)

// The SLO limits (Kubernetes' scalability SLOs, as the issue states them).
const (
	mutatingLimit   = 1.0  // seconds, p99 per resource and verb
	readLimit       = 1.0  // seconds, p99 per resource, single-object GET
	listLimit       = 30.0 // seconds, p99 per resource, LIST
	podStartupLimit = 5 * time.Second
)

// requestLabels are the labels of apiserver_request_duration_seconds a
// call is keyed by (group, version, component and dry_run are added up).
var requestLabels = []string{"verb", "resource", "subresource", "scope"}

// call is the latency of one resource and verb over the load.
type call struct {
	Verb, Resource, Scope string
	Class                 string
	Count                 float64
	P50, P90, P99         float64 // seconds
}

// Name is "VERB resource[/subresource] (scope)".
func (c call) Name() string { return fmt.Sprintf("%s %s (%s)", c.Verb, c.Resource, c.Scope) }

// classOf is the SLO class of a verb; "" for calls outside the SLO
// (WATCH, CONNECT: long-running).
func classOf(verb string) string {
	switch verb {
	case "POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY":
		return classMutating
	case "GET":
		return classRead
	case "LIST":
		return classList
	}
	return ""
}

// calls turns the request-duration histograms observed during the load
// (keyed by requestLabels) into per-call percentiles, SLO classes only,
// ordered by class then name.
func calls(delta map[string]histogram) []call {
	var out []call
	for key, h := range delta {
		f := strings.Split(key, " ")
		if len(f) != len(requestLabels) || h.Count() <= 0 {
			continue
		}
		class := classOf(f[0])
		if class == "" {
			continue
		}
		res := f[1]
		if f[2] != "" {
			res += "/" + f[2]
		}
		out = append(out, call{Verb: f[0], Resource: res, Scope: f[3], Class: class, Count: h.Count(),
			P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99)})
	}
	slices.SortFunc(out, func(a, b call) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Name(), b.Name()))
	})
	return out
}

// startup summarizes pod startup latencies, and the two parts of each:
// waiting to be bound (the scheduler and the API path before it) and bound
// to Running (the node's side, kwok's status patch here).
type startup struct {
	Pods                      int
	Total, ToBound, ToRunning percentiles
}

// percentiles are p50, p90 and p99 of some latencies.
type percentiles struct{ P50, P90, P99 time.Duration }

func (p percentiles) String() string {
	return fmt.Sprintf("%.2f / %.2f / %.2f s", p.P50.Seconds(), p.P90.Seconds(), p.P99.Seconds())
}

func percentilesOf(lat []time.Duration) percentiles {
	slices.Sort(lat)
	return percentiles{latency.Percentile(lat, 0.5), latency.Percentile(lat, 0.9), latency.Percentile(lat, 0.99)}
}

func summarizeStartup(total, toBound, toRunning []time.Duration) startup {
	return startup{Pods: len(total), Total: percentilesOf(total), ToBound: percentilesOf(toBound), ToRunning: percentilesOf(toRunning)}
}

// verdict is one SLO row of one side.
type verdict struct {
	Value string // e.g. "0.412 s (PATCH pods (namespace))"
	OK    bool
}

// sloRow is one SLO with each side's verdict.
type sloRow struct {
	SLO   string
	Sides []verdict
}

// sloFacts are what one side's SLO rows are computed from.
type sloFacts struct {
	Calls         []call
	Startup       startup
	LeaderChanges float64
	// PluginRestarts is the sum of the plugins' restarts; negative where
	// the side has no plugins (upstream), then ProcessesAlive speaks.
	PluginRestarts int
	// PluginsRelaunched counts plugins whose process changed (a restart,
	// or a launch on a new leader).
	PluginsRelaunched int
	ProcessesAlive    bool
}

// worst is the call of class with the highest p99, ok false if none.
func worst(cs []call, class string) (call, bool) {
	var w call
	found := false
	for _, c := range cs {
		if c.Class == class && (!found || c.P99 > w.P99) {
			w, found = c, true
		}
	}
	return w, found
}

func callVerdict(cs []call, class string, limit float64) verdict {
	w, ok := worst(cs, class)
	if !ok {
		return verdict{Value: "no calls", OK: false}
	}
	return verdict{Value: fmt.Sprintf("%.3f s (%s)", w.P99, w.Name()), OK: w.P99 <= limit}
}

// sloNames are the SLO rows, in the order sloVerdicts returns them.
var sloNames = []string{
	"mutating API calls p99 <= 1 s (worst resource/verb)",
	"single-object reads p99 <= 1 s (worst resource)",
	"lists p99 <= 30 s (worst resource)",
	"pod startup p99 <= 5 s",
	"no raft leader change",
	"no plugin restart",
}

// sloVerdicts judges one side against every SLO.
func sloVerdicts(f sloFacts) []verdict {
	v := []verdict{
		callVerdict(f.Calls, classMutating, mutatingLimit),
		callVerdict(f.Calls, classRead, readLimit),
		callVerdict(f.Calls, classList, listLimit),
		{Value: fmt.Sprintf("%.2f s (%d pods)", f.Startup.Total.P99.Seconds(), f.Startup.Pods), OK: f.Startup.Pods > 0 && f.Startup.Total.P99 <= podStartupLimit},
		{Value: fmt.Sprintf("%g changes", f.LeaderChanges), OK: f.LeaderChanges == 0},
	}
	if f.PluginRestarts >= 0 {
		v = append(v, verdict{Value: fmt.Sprintf("%d restarts, %d processes replaced", f.PluginRestarts, f.PluginsRelaunched),
			OK: f.PluginRestarts == 0 && f.PluginsRelaunched == 0})
	} else {
		v = append(v, verdict{Value: fmt.Sprintf("n/a (no plugins; controllers alive: %v)", f.ProcessesAlive), OK: f.ProcessesAlive})
	}
	return v
}

// sloTable lines up every side's verdicts per SLO.
func sloTable(sides []sloFacts) []sloRow {
	rows := make([]sloRow, len(sloNames))
	for i, name := range sloNames {
		rows[i].SLO = name
	}
	for _, f := range sides {
		for i, v := range sloVerdicts(f) {
			rows[i].Sides = append(rows[i].Sides, v)
		}
	}
	return rows
}
