// Command workloadbench measures keelson's workload controllers against
// upstream kube-controller-manager on the same kind of keelson server, one
// -workload at a time (-size 1000 by default):
//
//   - deployment: a Deployment of -size pods, the time until all its pods
//     exist, until it is available, and for a rolling update (new image)
//     to complete;
//   - job: an Indexed Job of -size completions (100 in parallel), the time
//     until it is Complete;
//   - daemonset: a DaemonSet over -size API-created nodes, the time until
//     every node's pod exists, until it is available, and for a rolling
//     update (10% at a time) to complete.
//
// The bench plays the kubelet: pods are marked Running and Ready (Succeeded,
// for the Job) as they appear; there are no agents. Each controller runs
// against a fresh server:
//
//   - keelson: the server's plugins for the workload (the other built-ins
//     disabled), as plugin processes;
//   - upstream: the server with every built-in disabled, and
//     kube-controller-manager --controllers=<the same controllers> with the
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
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

type options struct {
	keelsonBin, kcmBin string
	workload           string
	size               int
	workDir, jsonPath  string
	timeout            time.Duration
	matched            bool
}

func main() {
	var o options
	flag.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary")
	flag.StringVar(&o.kcmBin, "kcm-bin", "bin/kube-controller-manager-ref", "upstream kube-controller-manager binary ('' to skip)")
	flag.StringVar(&o.workload, "workload", "deployment", "deployment, job or daemonset")
	flag.IntVar(&o.size, "size", 1000, "replicas of the Deployment, completions of the Job, nodes of the DaemonSet")
	flag.IntVar(&o.size, "replicas", 1000, "the same as -size")
	flag.StringVar(&o.workDir, "work-dir", os.TempDir(), "where server data dirs go")
	flag.StringVar(&o.jsonPath, "json", "", "also write the figures to this file")
	flag.DurationVar(&o.timeout, "timeout", 15*time.Minute, "bound on each phase")
	flag.BoolVar(&o.matched, "matched", true, "also run each controller at the other's default client limits (plugins 50 qps/burst 100, kube-controller-manager 20/30)")
	flag.Parse()
	if o.size < 1 {
		fmt.Fprintln(os.Stderr, "workloadbench: -size must be at least 1")
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
	Workload string   `json:"workload"`
	Describe string   `json:"describe"`
	Size     int      `json:"size"`
	Runs     []Result `json:"runs"`
	Notes    []string `json:"notes"`
}

func run(ctx context.Context, o options) error {
	w, err := workloadByName(o.workload)
	if err != nil {
		return err
	}
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
	rep := Report{Machine: report.ThisMachine(), Workload: w.name(), Describe: w.describe(o.size), Size: o.size}
	for _, s := range sides {
		fmt.Fprintf(os.Stderr, "workloadbench: %s: load %s\n", s.label(), procstat.LoadAvg())
		r, err := measure(ctx, o, w, s)
		if err != nil {
			return fmt.Errorf("%s: %w", s.label(), err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	rep.Notes = notes(rep, w)
	print(rep)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, rep)
	}
	return nil
}

func notes(rep Report, w workload) []string {
	n := []string{
		"pods are not bound to nodes: their status is patched by the bench (Running and Ready; Succeeded for the Job) as soon as they appear; deleted pods go at once",
		"one run per controller, each on a fresh server, one after the other; the machine's noise between runs is large (see bench/README.md)",
		"default client limits: keelson plugins 50 qps / burst 100 (plugins/sdk), kube-controller-manager 20 qps / burst 30",
		fmt.Sprintf("keelson's figures add up its plugin processes (%s), each the keelson binary; kube-controller-manager is one process", strings.Join(w.plugins(), ", ")),
	}
	if len(rep.Runs) > 1 && rep.Runs[0].FirstReplicaSet != "" {
		same := true
		for _, r := range rep.Runs[1:] {
			same = same && r.FirstReplicaSet == rep.Runs[0].FirstReplicaSet
		}
		n = append(n, fmt.Sprintf("same ReplicaSet name for the same template under every controller: %v (%s)", same, rep.Runs[0].FirstReplicaSet))
	}
	return n
}

func print(rep Report) {
	fmt.Printf("\nworkloadbench: %s (%s, %d CPUs)\n\n", rep.Describe, rep.Platform, rep.CPUs)
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
	if len(rep.Runs) > 0 {
		for i, p := range rep.Runs[0].Phases {
			row(p.Name, func(r Result) string {
				if i >= len(r.Phases) {
					return "-"
				}
				return fmt.Sprintf("%.1f s", r.Phases[i].Duration.Seconds())
			})
		}
	}
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
