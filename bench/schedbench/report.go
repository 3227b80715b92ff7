package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/report"
)

// printTable prints, for each node count, the median of each figure per
// side, side by side, and every measurement after.
func printTable(out io.Writer, rep Report) {
	fmt.Fprintf(out, "\nScheduler throughput: %d pending pods (100m cpu, 128 MiB each) on kwok-style nodes (32 cpu, 256 GiB, 110 pods, 4 zones),\n", rep.Pods)
	fmt.Fprintf(out, "one keelson server; each scheduler runs alone with client QPS %d; %s, %d CPUs, median of %d round(s)\n\n",
		rep.ClientQPS, rep.Platform, rep.CPUs, rep.Rounds)
	var sides []string
	var nodeCounts []int
	for _, m := range rep.Results {
		if !slices.Contains(sides, m.Side) {
			sides = append(sides, m.Side)
		}
		if !slices.Contains(nodeCounts, m.Nodes) {
			nodeCounts = append(nodeCounts, m.Nodes)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "nodes\tfigure\t%s\t\n", strings.Join(sides, "\t"))
	rows := []struct {
		name string
		get  func(Measurement) float64
		f    string
	}{
		{"pods/s (first to last bind)", func(m Measurement) float64 { return m.PodsPerSec }, "%.0f"},
		{"start to first bind (s)", func(m Measurement) float64 { return m.FirstBindSec }, "%.1f"},
		{"start to all bound (s)", func(m Measurement) float64 { return m.AllBoundSec }, "%.1f"},
		{"scheduler CPU (s)", func(m Measurement) float64 { return m.CPUSec }, "%.1f"},
		{"scheduler CPU per pod (ms)", func(m Measurement) float64 { return 1000 * m.CPUSec / float64(m.Pods) }, "%.2f"},
		{"server CPU per pod (ms)", func(m Measurement) float64 { return 1000 * m.ServerCPUSec / float64(m.Pods) }, "%.2f"},
		{"scheduler peak RSS (MiB)", func(m Measurement) float64 { return m.PeakRSSMiB }, "%.0f"},
		{"pods per node: stddev", func(m Measurement) float64 { return m.Spread.StdDev }, "%.2f"},
		{"pods per node: min", func(m Measurement) float64 { return float64(m.Spread.Min) }, "%.0f"},
		{"pods per node: max", func(m Measurement) float64 { return float64(m.Spread.Max) }, "%.0f"},
	}
	for _, n := range nodeCounts {
		for _, r := range rows {
			fmt.Fprintf(tw, "%d\t%s\t", n, r.name)
			for _, side := range sides {
				fmt.Fprintf(tw, r.f+"\t", median(rep.Results, side, n, r.get))
			}
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(out, "\nEvery measurement:")
	for _, m := range rep.Results {
		fmt.Fprintf(out, "  %-8s %5d nodes: %6.0f pods/s, all bound %5.1fs, CPU %5.1fs, RSS %4.0f MiB, pods/node %d..%d stddev %.2f, load %s -> %s\n",
			m.Side, m.Nodes, m.PodsPerSec, m.AllBoundSec, m.CPUSec, m.PeakRSSMiB, m.Spread.Min, m.Spread.Max, m.Spread.StdDev, m.LoadAvgBefore, m.LoadAvgAfter)
	}
	report.PrintNotes(out, []string{
		"pods/s counts binds seen by a watch from the first to the last; the start (informer sync) is in 'start to first bind'",
		"keelson's scheduler runs as a child of schedbench (sdk.RunLocal), kube-scheduler with its default profile; both use the admin kubeconfig",
	})
}

func median(ms []Measurement, side string, nodes int, get func(Measurement) float64) float64 {
	var vs []float64
	for _, m := range ms {
		if m.Side == side && m.Nodes == nodes {
			vs = append(vs, get(m))
		}
	}
	if len(vs) == 0 {
		return 0
	}
	sort.Float64s(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}
