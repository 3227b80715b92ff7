package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/latency"
	"github.com/keelson/keelson/bench/internal/report"
)

// column is one target under one load, its rounds pooled.
type column struct {
	Load      string  `json:"load"`
	Target    string  `json:"target"`
	Requests  int     `json:"requests"`
	ReqPerSec float64 `json:"req_per_s"`
	P50Us     float64 `json:"p50_us"`
	P99Us     float64 `json:"p99_us"`
	// P50AddedUs and P99AddedUs are over direct under the same load.
	P50AddedUs float64 `json:"p50_added_us"`
	P99AddedUs float64 `json:"p99_added_us"`
}

type results struct {
	report.Machine
	Procs    int      `json:"procs"`
	Rounds   int      `json:"rounds"`
	Duration string   `json:"duration_per_round"`
	LoadAvg  string   `json:"loadavg_before"`
	Columns  []column `json:"columns"`
	// Ingresses are the extra Ingresses keelson's data plane held.
	Ingresses int `json:"ingresses"`
	// ProxyGOGC is -proxy-gogc (0: the proxies' own setting).
	ProxyGOGC int          `json:"proxy_gogc"`
	Memory    []procMemory `json:"memory_after"`
}

// procMemory is a proxy's resident memory after the loads.
type procMemory struct {
	Target  string  `json:"target"`
	RSSMiB  float64 `json:"rss_mib"`
	PeakMiB float64 `json:"peak_rss_mib"`
}

// memories reads each proxy's resident memory; a process that cannot be
// read is left out, saying so.
func memories(ts []target) []procMemory {
	var out []procMemory
	for _, t := range ts {
		if t.pid == 0 {
			continue
		}
		rss, peak, err := memory(t.pid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ingressbench: memory of %s: %v\n", t.name, err)
			continue
		}
		out = append(out, procMemory{Target: t.name, RSSMiB: rss, PeakMiB: peak})
	}
	return out
}

// measure runs every load against every target, in o.rounds interleaved
// rounds, and pools each column's rounds.
func measure(ctx context.Context, o options, ts []target) (results, error) {
	res := results{Machine: report.ThisMachine(), Procs: o.procs, Rounds: o.rounds, Duration: o.duration.String(), LoadAvg: loadAvg()}
	for _, l := range o.loads() {
		pooled := make([]sample, len(ts))
		for r := range o.rounds {
			for i, t := range ts {
				s, err := drive(ctx, t.url, l, o.duration)
				if err != nil {
					return res, fmt.Errorf("%s, %s connections, round %d: %w", t.name, l, r+1, err)
				}
				pooled[i].lat = append(pooled[i].lat, s.lat...)
				pooled[i].elapsed += s.elapsed
			}
		}
		var direct column
		for i, t := range ts {
			c := summarize(l, t.name, pooled[i])
			if i == 0 {
				direct = c
			}
			c.P50AddedUs, c.P99AddedUs = c.P50Us-direct.P50Us, c.P99Us-direct.P99Us
			fmt.Fprintf(os.Stderr, "ingressbench: %s connections, %s: %.0f req/s, p50 %.0f µs, p99 %.0f µs\n", l, t.name, c.ReqPerSec, c.P50Us, c.P99Us)
			res.Columns = append(res.Columns, c)
		}
	}
	return res, nil
}

func summarize(l load, name string, s sample) column {
	sum := latency.Summarize(s.lat)
	return column{Load: l.String(), Target: name, Requests: len(s.lat),
		ReqPerSec: latency.Rate(len(s.lat), s.elapsed), P50Us: sum.P50Ms * 1000, P99Us: sum.P99Ms * 1000}
}

// loadAvg is the machine's load average as uptime prints it.
func loadAvg() string {
	b, err := exec.Command("uptime").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	s := strings.TrimSpace(string(b))
	if _, after, ok := strings.Cut(s, "load average: "); ok {
		return after
	}
	return s
}

func (r results) print(out io.Writer, jsonOut string) error {
	fmt.Fprintf(out, "ingress data plane: small GETs, HTTP/1.1 keep-alive, loopback; backend and proxies GOMAXPROCS=%d; %d rounds of %s per column; load average before: %s\n",
		r.Procs, r.Rounds, r.Duration, r.LoadAvg)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "connections\ttarget\treq/s\tp50 µs\tp99 µs\tp50 added µs\tp99 added µs\t")
	for _, c := range r.Columns {
		added := "\t"
		if c.Target != "direct" {
			added = fmt.Sprintf("%.0f\t%.0f", c.P50AddedUs, c.P99AddedUs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%.0f\t%s\t\n", c.Load, c.Target, c.ReqPerSec, c.P50Us, c.P99Us, added)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	gc := "each proxy's own GC setting (keelson: its gogc/heapLimit defaults)"
	if r.ProxyGOGC > 0 {
		gc = fmt.Sprintf("GOGC=%d for each proxy", r.ProxyGOGC)
	}
	mem := fmt.Sprintf("%s; keelson's data plane holds %d other Ingresses (each with a Service and an EndpointSlice); resident memory after the loads (peak):", gc, r.Ingresses)
	for _, m := range r.Memory {
		mem += fmt.Sprintf(" %s %.1f MiB (%.1f MiB)", m.Target, m.RSSMiB, m.PeakMiB)
	}
	report.PrintNotes(out, []string{
		mem,
		"added: the proxy's p50/p99 minus direct's under the same load; the client, the backend and the proxy share this machine's cores",
		fmt.Sprintf("paced load (N@R/s): N connections sending R requests/s together, latency counted from each request's scheduled time; load average after: %s", loadAvg()),
	})
	if jsonOut != "" {
		return report.WriteJSON(jsonOut, r)
	}
	return nil
}
