package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

// fullReport is the -json document: the setup and every figure.
type fullReport struct {
	report.Machine
	KeyBytes int            `json:"key_bytes"`
	ValBytes int            `json:"value_bytes"`
	Notes    []string       `json:"notes"`
	Servers  []serverReport `json:"servers"`
}

func newReport(p plan, servers []serverReport) fullReport {
	return fullReport{
		Machine:  report.ThisMachine(),
		KeyBytes: keySize,
		ValBytes: valueSize,
		Notes: []string{
			"single member each, on 127.0.0.1 without TLS, fresh data dir under " + p.WorkDir,
			"both servers fsync their log before acknowledging a put (etcd: WAL; keelson: raft log)",
			fmt.Sprintf("each put creates a new key; clients share ceil(clients/%d) gRPC connections, as in etcd's `benchmark --conns=100 --clients=1000 put`", clientsPerConn),
			fmt.Sprintf("both servers up during the runs; passes ordered A B B A (%d round(s)) so drifting machine load hits both alike", max(1, p.Rounds)),
			"load generator runs on the same machine and competes for the same CPUs",
		},
		Servers: servers,
	}
}

// printTable writes the side-by-side comparison of two servers.
func printTable(out io.Writer, rep fullReport) {
	fmt.Fprintf(out, "kvbench: %d-byte keys, %d-byte values, %s %s, %d CPUs\n",
		rep.KeyBytes, rep.ValBytes, rep.GoVersion, rep.Platform, rep.CPUs)
	report.PrintNotes(out, rep.Notes)
	a, b := rep.Servers[0], rep.Servers[1]
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "workload\tconns\t|\t%s puts/s\tp50 ms\tp99 ms\t|\t%s puts/s\tp50 ms\tp99 ms\t\n", a.Label, b.Label)
	for i := range a.Results {
		ra, rb := a.Results[i], b.Results[i]
		fmt.Fprintf(tw, "%s\t%d\t|\t%s\t%.2f\t%.2f\t|\t%s\t%.2f\t%.2f\t\n",
			ra.Workload, ra.Conns, rate(ra), ra.P50Ms, ra.P99Ms, rate(rb), rb.P50Ms, rb.P99Ms)
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "memory\t|\t%s VmRSS MiB\tVmHWM MiB\tRssAnon MiB\t|\t%s VmRSS MiB\tVmHWM MiB\tRssAnon MiB\t\n", a.Label, b.Label)
	fmt.Fprintf(tw, "after %d keys\t|\t%.1f\t%.1f\t%.1f\t|\t%.1f\t%.1f\t%.1f\t\n", a.FillKeys,
		procstat.MiB(a.Memory.VmRSSKiB), procstat.MiB(a.Memory.VmHWMKiB), procstat.MiB(a.Memory.RssAnonKiB),
		procstat.MiB(b.Memory.VmRSSKiB), procstat.MiB(b.Memory.VmHWMKiB), procstat.MiB(b.Memory.RssAnonKiB))
	tw.Flush()
	fmt.Fprintf(out, "(fill at %d clients: %s %s puts/s and %.1f CPU s, %s %s puts/s and %.1f CPU s; RSS read after the settle time)\n",
		a.Fill.Clients, a.Label, rate(a.Fill), a.FillCPUSeconds, b.Label, rate(b.Fill), b.FillCPUSeconds)
	if last := len(a.Results) - 1; last >= 0 && a.Results[last].PutsPerSec > 0 {
		fmt.Fprintf(out, "\n%s / %s throughput at %d clients: %.2fx (aim: >= 1.00x)\n", b.Label, a.Label,
			a.Results[last].Clients, b.Results[last].PutsPerSec/a.Results[last].PutsPerSec)
	}
}

// rate formats puts/s, marking a run that hit its time cap.
func rate(r result) string {
	s := fmt.Sprintf("%.0f", r.PutsPerSec)
	if r.Truncated {
		s += fmt.Sprintf(" (%d puts, time cap)", r.Puts)
	}
	return s
}

func printResult(out io.Writer, endpoints string, r result) {
	fmt.Fprintf(out, "%s against %s: %d puts (%d-byte keys, %d-byte values), %d clients over %d shared gRPC connections\n",
		r.Workload, endpoints, r.Puts, keySize, valueSize, r.Clients, r.Conns)
	fmt.Fprintf(out, "  %.0f puts/s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  max %.2f ms  (%.1f s)\n",
		r.PutsPerSec, r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs, r.ElapsedSec)
	if r.Truncated {
		fmt.Fprintln(out, "  stopped early by -max-duration")
	}
}
