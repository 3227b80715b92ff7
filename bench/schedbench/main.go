// Command schedbench measures keelson's scheduler against upstream
// kube-scheduler on the same keelson server: pods bound per second for a
// batch of pending pods on kwok-style fake nodes (created through the API,
// no kubelet), and how evenly the pods land on the nodes. The two
// schedulers run one after the other against the same server, nodes and
// pods, never at once. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/command"
	"github.com/keelson/keelson/bench/internal/keelsonproc"
	"github.com/keelson/keelson/bench/internal/report"
)

type options struct {
	keelsonBin   string
	upstreamBin  string
	nodeCounts   []int
	pods         int
	rounds       int
	sides        []string
	workers      int
	qps          int
	timeout      time.Duration
	readyTimeout time.Duration
	workDir      string
	jsonPath     string
	// child mode: run keelson's scheduler in this process against
	// childKubeconfig (how the orchestrator starts the keelson side).
	childKubeconfig string
	childConfig     string
	// profileDir, when set, makes the keelson child write a CPU profile
	// there (a tool for finding where its time goes).
	profileDir string
	// serverArgs are extra flags for the keelson server.
	serverArgs string
	// keelsonConfig is keelson's scheduler configuration section (JSON).
	keelsonConfig string
}

var allSides = []string{"keelson", "upstream"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var nodes, sides string
	fs := flag.NewFlagSet("schedbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary, the API server both schedulers use (make build)")
	fs.StringVar(&o.upstreamBin, "kube-scheduler-bin", "bin/kube-scheduler-ref", "upstream kube-scheduler binary (see scripts/bench-sched.sh)")
	fs.StringVar(&nodes, "nodes", "1000,5000", "node counts to measure, ascending; nodes are added between steps")
	fs.IntVar(&o.pods, "pods", 10000, "pending pods each scheduler binds per measurement")
	fs.IntVar(&o.rounds, "rounds", 1, "measurements per side and node count, alternating which side goes first")
	fs.StringVar(&sides, "sides", strings.Join(allSides, ","), "schedulers to measure")
	fs.IntVar(&o.workers, "workers", 32, "concurrent clients creating and deleting nodes and pods")
	fs.IntVar(&o.qps, "client-qps", 5000, "client QPS (and half the burst) given to both schedulers")
	fs.DurationVar(&o.timeout, "timeout", 15*time.Minute, "give up on a measurement after this long")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up on a server that is not ready after this long")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "parent of the server's temporary data dir and the logs")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	fs.StringVar(&o.childKubeconfig, "run-keelson-scheduler", "", "internal: run keelson's scheduler against this kubeconfig until SIGTERM")
	fs.StringVar(&o.childConfig, "keelson-scheduler-config", "", "internal: the scheduler's JSON config section")
	fs.StringVar(&o.keelsonConfig, "keelson-config", "", "keelson's scheduler configuration section (JSON); the client rate limits of -client-qps are added")
	fs.StringVar(&o.serverArgs, "server-args", "", "extra flags for the keelson server, space-separated (e.g. \"--debug-listen 127.0.0.1:6060\")")
	fs.StringVar(&o.profileDir, "profile-dir", "", "write a CPU profile of keelson's scheduler per measurement into this directory")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.childKubeconfig != "" {
		return o, nil
	}
	for _, s := range strings.Split(nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(o.nodeCounts) > 0 && n <= o.nodeCounts[len(o.nodeCounts)-1]) {
			return o, fmt.Errorf("-nodes %q: want ascending positive counts, e.g. 1000,5000", nodes)
		}
		o.nodeCounts = append(o.nodeCounts, n)
	}
	for _, s := range strings.Split(sides, ",") {
		if !slices.Contains(allSides, s) || slices.Contains(o.sides, s) {
			return o, fmt.Errorf("-sides %q: want distinct names from %v", sides, allSides)
		}
		o.sides = append(o.sides, s)
	}
	if o.pods < 2 || o.rounds < 1 || o.workers < 1 || o.qps < 1 {
		return o, errors.New("-pods must be at least 2; -rounds, -workers and -client-qps at least 1")
	}
	return o, nil
}

func main() {
	os.Exit(command.Main("schedbench", os.Args[1:], os.Stderr, parseFlags, func(ctx context.Context, o options) error {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		if o.childKubeconfig != "" {
			return runKeelsonScheduler(ctx, o.childKubeconfig, o.childConfig, o.profileDir, log)
		}
		return run(ctx, log, o, os.Stdout)
	}))
}

// Report is the whole run.
type Report struct {
	report.Machine
	Pods      int           `json:"pods"`
	Rounds    int           `json:"rounds"`
	ClientQPS int           `json:"client_qps"`
	Results   []Measurement `json:"results"`
}

func run(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	for _, bin := range []struct{ flag, path, side string }{
		{"-keelson-bin", o.keelsonBin, ""}, {"-kube-scheduler-bin", o.upstreamBin, "upstream"},
	} {
		if bin.side != "" && !slices.Contains(o.sides, bin.side) {
			continue
		}
		if _, err := os.Stat(bin.path); err != nil {
			return fmt.Errorf("%s %s: %w (scripts/bench-sched.sh builds it)", bin.flag, bin.path, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this binary to run keelson's scheduler: %w", err)
	}
	// No plugin runs in the server: the bench starts each scheduler itself.
	srv, err := keelsonproc.Start(ctx, abs(o.keelsonBin), o.workDir, o.readyTimeout,
		append([]string{"--disable-plugin", "*"}, strings.Fields(o.serverArgs)...)...)
	if err != nil {
		return err
	}
	defer srv.Stop()
	dir := srv.Dir
	log.Info("keelson server ready", "seconds", srv.Ready.Seconds())
	cl, err := newClusterClient(srv, o.workers)
	if err != nil {
		return err
	}
	if err := cl.prepareNamespace(ctx); err != nil {
		return err
	}
	rep := Report{Machine: report.ThisMachine(), Pods: o.pods, Rounds: o.rounds, ClientQPS: o.qps}
	starters := map[string]schedulerStarter{
		"keelson":  keelsonStarter(self, srv.Kubeconfig, o.keelsonConfig, o.qps, o.profileDir),
		"upstream": upstreamStarter(abs(o.upstreamBin), srv.Kubeconfig, o.qps),
	}
	for _, nodes := range o.nodeCounts {
		log.Info("creating nodes", "total", nodes)
		if err := cl.ensureNodes(ctx, nodes); err != nil {
			return err
		}
		for r := range o.rounds {
			for _, side := range sideOrder(o.sides, r) {
				log.Info("measuring", "side", side, "nodes", nodes, "pods", o.pods, "round", r+1)
				m, err := measure(ctx, log, cl, srv, starters[side], measureSpec{
					side: side, nodes: nodes, pods: o.pods, dir: dir, timeout: o.timeout,
				})
				if err != nil {
					return fmt.Errorf("%s with %d nodes (round %d): %w", side, nodes, r+1, err)
				}
				log.Info("measured", "side", side, "nodes", nodes, "pods_per_second", int(m.PodsPerSec), "spread_stddev", round(m.Spread.StdDev))
				rep.Results = append(rep.Results, m)
			}
		}
	}
	printTable(out, rep)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, rep)
	}
	return nil
}

// sideOrder alternates which side goes first from round to round, so drift
// in the machine's load is shared.
func sideOrder(sides []string, round int) []string {
	if round%2 == 0 {
		return sides
	}
	out := slices.Clone(sides)
	slices.Reverse(out)
	return out
}

func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

func round(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
