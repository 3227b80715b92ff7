package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// printReport writes the SLO table side by side, then the other figures.
func printReport(out io.Writer, f figures) {
	fmt.Fprintf(out, "\nScale: %d kwok nodes, %d pods created, scaled to %d, at %g pods/s; %s, %d CPUs; %.0f s in all\n\n",
		f.Nodes, f.PodsCreated, f.PodsScaled, f.Rate, f.Platform, f.CPUs, f.Seconds)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	header := []string{"SLO"}
	var facts []sloFacts
	for _, r := range f.Sides {
		header = append(header, r.Label)
		facts = append(facts, r.facts())
	}
	row(w, header...)
	for _, s := range sloTable(facts) {
		cells := []string{s.SLO}
		for _, v := range s.Sides {
			mark := "ok"
			if !v.OK {
				mark = "MISSED"
			}
			cells = append(cells, mark+": "+v.Value)
		}
		row(w, cells...)
	}
	sideRows(w, f.Sides, "load average (1 min) mean / peak", func(r result) string { return fmt.Sprintf("%.1f / %.1f", r.LoadMean, r.LoadPeak) })
	for i, name := range loadSteps {
		sideRows(w, f.Sides, name+" step, to pods settled", func(r result) string {
			if i >= len(r.Phases) {
				return "not run"
			}
			ph := r.Phases[i]
			s := fmt.Sprintf("%.0f s", ph.End.Sub(ph.Start).Seconds())
			if ph.Err != "" {
				s += " FAILED"
			}
			return s
		})
	}
	sideRows(w, f.Sides, "pod startup p50 / p90 / p99", func(r result) string {
		return r.Startup.Total.String()
	})
	sideRows(w, f.Sides, "  of which seen to bound", func(r result) string { return r.Startup.ToBound.String() })
	sideRows(w, f.Sides, "  of which bound to Running", func(r result) string { return r.Startup.ToRunning.String() })
	sideRows(w, f.Sides, "scheduler: pods bound, avg / peak per s", func(r result) string {
		return fmt.Sprintf("%d, %.1f / %d", r.Scheduler.Pods, r.Scheduler.AvgPerSec, r.Scheduler.PeakPerSec)
	})
	sideRows(w, f.Sides, "raft commit p50 / p90 / p99", func(r result) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f ms (%.0f)", r.Commit.P50*1e3, r.Commit.P90*1e3, r.Commit.P99*1e3, r.Commit.Count)
	})
	sideRows(w, f.Sides, "CPU s during the load (all processes)", func(r result) string {
		var cpu, rss float64
		for _, p := range r.Procs {
			cpu += p.CPUSeconds
			rss += p.PeakRSSMiB
		}
		return fmt.Sprintf("%.0f s, peak RSS sum %.0f MiB", cpu, rss)
	})
	w.Flush()
	for _, r := range f.Sides {
		if r.Err != "" {
			fmt.Fprintf(out, "\n%s: the load failed: %s\n", r.Label, r.Err)
		}
		if n := len(r.Failures); n > 0 {
			fmt.Fprintf(out, "%s: %d API calls of the load failed and were retried; the first: %s\n", r.Label, n, r.Failures[0])
		}
		if r.Commit.Source != "" {
			fmt.Fprintf(out, "%s: raft commit from %s\n", r.Label, r.Commit.Source)
		}
	}
	printCalls(out, f.Sides)
	printProcs(out, f.Sides)
}

func row(w io.Writer, cells ...string) { fmt.Fprintln(w, strings.Join(cells, "\t")+"\t") }

func sideRows(w io.Writer, sides []result, name string, cell func(result) string) {
	cells := []string{name}
	for _, r := range sides {
		cells = append(cells, cell(r))
	}
	row(w, cells...)
}

// printCalls lists each resource and verb with each side's count and
// percentiles (apiserver_request_duration_seconds over the load).
func printCalls(out io.Writer, sides []result) {
	fmt.Fprintln(out, "\nAPI calls during the load (apiserver_request_duration_seconds; count, p50 / p90 / p99 ms):")
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
	header := []string{"call"}
	byName := make([]map[string]call, len(sides))
	var names []string
	seen := map[string]bool{}
	for i, r := range sides {
		header = append(header, r.Label)
		byName[i] = map[string]call{}
		for _, c := range r.Calls {
			byName[i][c.Name()] = c
			if !seen[c.Name()] {
				seen[c.Name()] = true
				names = append(names, c.Class+"\x00"+c.Name())
			}
		}
	}
	slices.Sort(names)
	row(w, header...)
	for _, n := range names {
		name := n[strings.IndexByte(n, 0)+1:]
		cells := []string{name}
		for i := range sides {
			c, ok := byName[i][name]
			if !ok {
				cells = append(cells, "-")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.0f, %.0f / %.0f / %.0f", c.Count, c.P50*1e3, c.P90*1e3, c.P99*1e3))
		}
		row(w, cells...)
	}
	w.Flush()
}

// printProcs lists each side's processes: CPU seconds during the load and
// peak resident memory.
func printProcs(out io.Writer, sides []result) {
	for _, r := range sides {
		fmt.Fprintf(out, "\n%s processes (CPU s during the load, peak RSS MiB):\n", r.Label)
		w := tabwriter.NewWriter(out, 2, 4, 2, ' ', tabwriter.AlignRight)
		for _, p := range r.Procs {
			row(w, p.Name, fmt.Sprintf("%.1f", p.CPUSeconds), fmt.Sprintf("%.0f", p.PeakRSSMiB))
		}
		w.Flush()
	}
}
