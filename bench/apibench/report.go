package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

// sideReport is every figure taken from one side.
type sideReport struct {
	Label     string   `json:"label"`
	Processes []string `json:"processes"` // name: command line
	// ReadySec is from the first process start to the first /readyz 200;
	// Stages splits it per process.
	ReadySec      float64              `json:"ready_seconds"`
	Stages        []stage              `json:"ready_stages"`
	Create        configmapload.Result `json:"create"`
	Idle          memorySet            `json:"memory_idle"`
	Loaded        memorySet            `json:"memory_after_creates"`
	LoadAvgBefore string               `json:"load_average_before"`
	LoadAvgAfter  string               `json:"load_average_after"`
}

// fullReport is the -json document: the setup and every figure.
type fullReport struct {
	report.Machine
	Workload  configmapload.Workload `json:"workload"`
	SettleSec float64                `json:"settle_seconds"`
	Notes     []string               `json:"notes"`
	// Sides holds the figures printed: with one round that round's, with
	// more the median of each figure over the rounds.
	Sides []sideReport `json:"sides"`
	// Rounds holds every round's figures, in the order the sides ran.
	Rounds [][]sideReport `json:"rounds"`
}

func newReport(o options) fullReport {
	return fullReport{
		Machine:   report.ThisMachine(),
		Workload:  o.workload,
		SettleSec: o.settle.Seconds(),
		Notes: []string{
			o.workload.Describe(),
			"sides run one after the other (never at once), each on fresh temp dirs under " + o.workDir + ", on 127.0.0.1 only",
			fmt.Sprintf("%d round(s), the order of the sides alternating per round; with more than one, every figure is the median over the rounds", o.rounds),
			"upstream: kube-apiserver with the flags keelson gives its embedded one, on a single-member etcd over http; its certificates are made before the clock starts",
			"keelson: one process (store, etcd API, kube-apiserver); time to ready includes making its certificates",
			fmt.Sprintf("memory read %v after ready and %v after the creates; upstream sums kube-apiserver and etcd (summed HWM = sum of each peak)", o.settle, o.settle),
			"the load generator runs on the same CPUs as the servers",
		},
	}
}

// printTable writes the figures with one column per side.
func printTable(out io.Writer, rep fullReport) {
	fmt.Fprintf(out, "apibench: %s %s, %d CPUs\n", rep.GoVersion, rep.Platform, rep.CPUs)
	report.PrintNotes(out, rep.Notes)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(name string, cell func(sideReport) string) {
		cells := []string{name}
		for _, s := range rep.Sides {
			cells = append(cells, cell(s))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t|\t")+"\t")
	}
	row("", func(s sideReport) string { return s.Label })
	row("time to ready (s)", func(s sideReport) string { return readyCell(s) })
	row(fmt.Sprintf("creates/s (%d workers)", rep.Workload.Workers), func(s sideReport) string { return rateCell(s.Create) })
	row("create p50 / p99 (ms)", func(s sideReport) string {
		return fmt.Sprintf("%.1f / %.1f", s.Create.P50Ms, s.Create.P99Ms)
	})
	row("VmRSS idle (MiB)", func(s sideReport) string { return memCell(s.Idle, false) })
	row("VmHWM idle (MiB)", func(s sideReport) string { return memCell(s.Idle, true) })
	row(fmt.Sprintf("VmRSS after %d ConfigMaps (MiB)", rep.Workload.Total), func(s sideReport) string { return memCell(s.Loaded, false) })
	row(fmt.Sprintf("VmHWM after %d ConfigMaps (MiB)", rep.Workload.Total), func(s sideReport) string { return memCell(s.Loaded, true) })
	row("load average before / after", func(s sideReport) string { return s.LoadAvgBefore + " / " + s.LoadAvgAfter })
	tw.Flush()
	if len(rep.Rounds) > 1 {
		fmt.Fprintln(out, "\nper round (creates/s, p99 ms, VmRSS after MiB):")
		for i, round := range rep.Rounds {
			var parts []string
			for _, s := range round {
				parts = append(parts, fmt.Sprintf("%s %.0f/s %.1f ms %.1f MiB", s.Label, s.Create.CreatesPerSec, s.Create.P99Ms, procstat.MiB(s.Loaded.VmRSSKiB)))
			}
			fmt.Fprintf(out, "  round %d: %s\n", i+1, strings.Join(parts, "; "))
		}
	}
	var up, ks *sideReport
	for i := range rep.Sides {
		switch rep.Sides[i].Label {
		case "upstream":
			up = &rep.Sides[i]
		case "keelson":
			ks = &rep.Sides[i]
		}
	}
	if up != nil && ks != nil && up.Create.CreatesPerSec > 0 && up.Create.P99Ms > 0 && up.ReadySec > 0 && up.Loaded.VmRSSKiB > 0 {
		fmt.Fprintf(out, "\nkeelson / upstream: creates/s %.2fx, p99 %.2fx, time to ready %.2fx, VmRSS idle %.2fx, VmRSS after creates %.2fx\n",
			ks.Create.CreatesPerSec/up.Create.CreatesPerSec, ks.Create.P99Ms/up.Create.P99Ms, ks.ReadySec/up.ReadySec,
			float64(ks.Idle.VmRSSKiB)/float64(up.Idle.VmRSSKiB), float64(ks.Loaded.VmRSSKiB)/float64(up.Loaded.VmRSSKiB))
	}
}

func readyCell(s sideReport) string {
	c := fmt.Sprintf("%.2f", s.ReadySec)
	if len(s.Stages) > 1 {
		var parts []string
		for _, st := range s.Stages {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.Fields(st.Name)[0], st.Seconds))
		}
		c += " (" + strings.Join(parts, " + ") + ")"
	}
	return c
}

func rateCell(r configmapload.Result) string {
	c := fmt.Sprintf("%.0f", r.CreatesPerSec)
	if r.Truncated {
		c += fmt.Sprintf(" (%d created, time cap)", r.Creates)
	}
	return c
}

func memCell(m memorySet, hwm bool) string {
	pick := func(rss, peak int64) int64 {
		if hwm {
			return peak
		}
		return rss
	}
	c := fmt.Sprintf("%.1f", procstat.MiB(pick(m.VmRSSKiB, m.VmHWMKiB)))
	if len(m.Processes) > 1 {
		var parts []string
		for _, p := range m.Processes {
			parts = append(parts, fmt.Sprintf("%s %.1f", p.Name, procstat.MiB(pick(p.VmRSSKiB, p.VmHWMKiB))))
		}
		c += " (" + strings.Join(parts, " + ") + ")"
	}
	return c
}

func round(v float64) float64 { return math.Round(v*100) / 100 }
