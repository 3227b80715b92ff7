// Command workloadbench measures keelson's workload controllers against
// upstream kube-controller-manager on the same kind of keelson server: for
// a Deployment of -replicas pods (default 1000), the time until all its pods
// exist, until it is available, and for a rolling update (new image) to
// complete, with pod readiness driven by the bench (there are no nodes).
// Each controller runs against a fresh server:
//
//   - keelson: the server's replicaset and deployment plugins (the other
//     built-ins disabled), as plugin processes;
//   - upstream: the server with every built-in disabled, and
//     kube-controller-manager --controllers=replicaset,deployment with the
//     server's admin kubeconfig.
//
// Both are bound by their client-side API rate limits, so with -matched
// (the default) each also runs at the other's defaults.
//
// Also reported: the controllers' CPU time and peak memory over the run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

type options struct {
	keelsonBin, kcmBin string
	replicas           int
	workDir, jsonPath  string
	timeout            time.Duration
	matched            bool
}

func main() {
	var o options
	flag.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary")
	flag.StringVar(&o.kcmBin, "kcm-bin", "bin/kube-controller-manager-ref", "upstream kube-controller-manager binary ('' to skip)")
	flag.IntVar(&o.replicas, "replicas", 1000, "replicas of the benchmark Deployment")
	flag.StringVar(&o.workDir, "work-dir", os.TempDir(), "where server data dirs go")
	flag.StringVar(&o.jsonPath, "json", "", "also write the figures to this file")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "bound on each phase")
	flag.BoolVar(&o.matched, "matched", true, "also run each controller at the other's default client limits (plugins 50 qps/burst 100, kube-controller-manager 20/30)")
	flag.Parse()
	if o.replicas < 1 {
		fmt.Fprintln(os.Stderr, "workloadbench: -replicas must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "workloadbench:", err)
		os.Exit(1)
	}
}

// Report is what -json writes.
type Report struct {
	report.Machine
	Replicas int      `json:"replicas"`
	Runs     []Result `json:"runs"`
	Notes    []string `json:"notes"`
}

func run(ctx context.Context, o options) error {
	// Each at its own default client limits, then (-matched) each at the
	// other's, since both are bound by them.
	pluginLimits, kcmLimits := limits{50, 100}, limits{20, 30}
	sides := []side{keelsonSide{}}
	if o.kcmBin != "" {
		if _, err := os.Stat(o.kcmBin); err != nil {
			return fmt.Errorf("-kcm-bin: %w (scripts/bench-workloads.sh builds it)", err)
		}
		sides = append(sides, kcmSide{bin: o.kcmBin})
		if o.matched {
			sides = append(sides, keelsonSide{kcmLimits}, kcmSide{o.kcmBin, pluginLimits})
		}
	}
	rep := Report{Machine: report.ThisMachine(), Replicas: o.replicas}
	for _, s := range sides {
		fmt.Fprintf(os.Stderr, "workloadbench: %s: load %s\n", s.label(), procstat.LoadAvg())
		r, err := measure(ctx, o, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label(), err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	rep.Notes = notes(rep)
	print(rep)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, rep)
	}
	return nil
}

func notes(rep Report) []string {
	n := []string{
		"pods have no node: readiness is patched by the bench (Running, Ready) as soon as a pod appears; deleted pods go at once",
		"one run per controller, each on a fresh server, one after the other; the machine's noise between runs is large (see bench/README.md)",
		"default client limits: keelson plugins 50 qps / burst 100 (plugins/sdk), kube-controller-manager 20 qps / burst 30",
		"keelson's figures add up its two plugin processes (replicaset, deployment), each the keelson binary; kube-controller-manager is one process",
	}
	if len(rep.Runs) > 1 {
		same := true
		for _, r := range rep.Runs[1:] {
			same = same && r.FirstReplicaSet == rep.Runs[0].FirstReplicaSet
		}
		n = append(n, fmt.Sprintf("same ReplicaSet name for the same template under every controller: %v (%s)", same, rep.Runs[0].FirstReplicaSet))
	}
	return n
}

func print(rep Report) {
	fmt.Printf("\nworkloadbench: Deployment of %d replicas, rolling update to a new image (%s, %d CPUs)\n\n", rep.Replicas, rep.Platform, rep.CPUs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "\t")
	for _, r := range rep.Runs {
		fmt.Fprintf(tw, "%s\t", r.Controller)
	}
	fmt.Fprintln(tw)
	row := func(label string, f func(Result) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for _, r := range rep.Runs {
			fmt.Fprintf(tw, "%s\t", f(r))
		}
		fmt.Fprintln(tw)
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
	row("all pods created", func(r Result) string { return secs(r.Created) })
	row("deployment available", func(r Result) string { return secs(r.Available) })
	row("rolling update complete", func(r Result) string { return secs(r.RolledOut) })
	row("controller CPU", func(r Result) string { return fmt.Sprintf("%.1f s", r.CPUSeconds) })
	row("controller PSS at end (RssAnon)", func(r Result) string {
		return fmt.Sprintf("%.0f MiB (%.0f)", procstat.MiB(r.PSSKiB), procstat.MiB(r.AnonRSSKiB))
	})
	row("controller peak RSS, summed", func(r Result) string { return fmt.Sprintf("%.0f MiB", procstat.MiB(r.PeakRSSKiB)) })
	row("load average before", func(r Result) string { return r.LoadBefore })
	tw.Flush()
	fmt.Println()
	report.PrintNotes(os.Stdout, rep.Notes)
}

var errTimeout = errors.New("timed out")
