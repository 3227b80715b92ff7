// Command scalebench drives kwok-simulated nodes and a clusterloader2-style
// load (namespaces of 100 nodes' worth, Deployments of 5/30/250 replicas
// with a Service each, created at a pod rate, scaled by 0.5x-1.5x, then
// deleted) against a 3-server keelson cluster on 127.0.0.1-3 and then
// against upstream etcd + kube-apiserver + kube-controller-manager +
// kube-scheduler, and prints both sides' Kubernetes SLO verdicts, API call
// latencies (from apiserver_request_duration_seconds), pod startup, the
// scheduler's throughput, raft commit latency and each process's CPU and
// memory. Run it through scripts/bench-scale.sh (`make bench-scale`), which
// builds the upstream binaries and kwok.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/bench/internal/command"
	"github.com/keelson/keelson/bench/internal/report"
)

type options struct {
	keelsonBin, apiserverBin, etcdBin, kcmBin, schedulerBin, kwokBin, kwokConfig string
	nodes, podsPerNode, nodesPerNamespace, kwokPodWorkers                        int
	rate, nodeRate                                                               float64
	seed                                                                         uint64
	sides                                                                        []string
	steps                                                                        int // how many of create, scale, delete run
	phaseTimeout                                                                 time.Duration
	workDir, jsonPath                                                            string
	verbose                                                                      bool
	keelsonArgs                                                                  []string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("scalebench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary")
	fs.StringVar(&o.apiserverBin, "apiserver-bin", "bin/kube-apiserver-ref", "upstream kube-apiserver binary")
	fs.StringVar(&o.etcdBin, "etcd-bin", "bin/etcd-ref", "etcd binary")
	fs.StringVar(&o.kcmBin, "kcm-bin", "bin/kube-controller-manager-ref", "upstream kube-controller-manager binary")
	fs.StringVar(&o.schedulerBin, "scheduler-bin", "bin/kube-scheduler-ref", "upstream kube-scheduler binary")
	fs.StringVar(&o.kwokBin, "kwok-bin", "bin/kwok-ref", "kwok binary")
	fs.StringVar(&o.kwokConfig, "kwok-config", "bin/kwok-stages.yaml", "kwok config with its stages (bench/kwokref/stages writes it)")
	fs.IntVar(&o.nodes, "nodes", 1000, "kwok nodes")
	fs.IntVar(&o.podsPerNode, "pods-per-node", 30, "pods per node the load creates")
	fs.IntVar(&o.nodesPerNamespace, "nodes-per-namespace", 100, "nodes' worth of pods per namespace")
	fs.IntVar(&o.kwokPodWorkers, "kwok-pod-workers", defaultKwokPodWorkers, "pod stages kwok plays at once, on both sides (its podPlayStageParallelism; kwok's default is 4)")
	fs.Float64Var(&o.rate, "rate", 10, "pods per second the create, scale and delete steps go at")
	fs.Float64Var(&o.nodeRate, "node-rate", 50, "nodes created per second")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the creation order and scale factors")
	keelsonArgs := fs.String("keelson-args", "", "extra flags for every keelson server, space-separated (e.g. raft timeouts)")
	sides := fs.String("sides", "keelson,upstream", "sides to run, in order: keelson, upstream")
	steps := fs.String("steps", "create,scale,delete", "steps of the load to run, in order: create; create,scale; or create,scale,delete")
	fs.DurationVar(&o.phaseTimeout, "phase-timeout", 30*time.Minute, "longest wait for the pods to settle after a step")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "where data dirs and logs go")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures to this file")
	fs.BoolVar(&o.verbose, "v", false, "debug logs")
	err := fs.Parse(args)
	if err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.nodes < 1 || o.nodes > maxNodes {
		return o, fmt.Errorf("-nodes %d: want 1 to %d (the servers' pod range, 10.64.0.0/10, holds a /24 for %d nodes)", o.nodes, maxNodes, maxNodes)
	}
	if o.kwokPodWorkers < 1 || o.kwokPodWorkers > 1024 {
		return o, fmt.Errorf("-kwok-pod-workers %d: want 1 to 1024", o.kwokPodWorkers)
	}
	if o.rate <= 0 || o.nodeRate <= 0 {
		return o, fmt.Errorf("-rate %g and -node-rate %g: want both above 0", o.rate, o.nodeRate)
	}
	o.keelsonArgs = strings.Fields(*keelsonArgs)
	if o.steps, err = parseSteps(*steps); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*sides, ",") {
		if s != "keelson" && s != "upstream" {
			return o, fmt.Errorf("-sides %q: %q is neither keelson nor upstream", *sides, s)
		}
		o.sides = append(o.sides, s)
	}
	return o, nil
}

// maxNodes is how many nodes clusterCIDRArgs has room for.
const maxNodes = 1 << 14

// loadSteps are the load's steps in the order they run; each needs the
// ones before it.
var loadSteps = []string{"create", "scale", "delete"}

// parseSteps returns how many of loadSteps the -steps value names: it must
// be a prefix of them (a scale needs the Deployments created, a delete the
// pods).
func parseSteps(v string) (int, error) {
	got := strings.Split(v, ",")
	if len(got) > len(loadSteps) || !slices.Equal(got, loadSteps[:len(got)]) {
		return 0, fmt.Errorf("-steps %q: want the steps in order from the first: %q, %q or %q",
			v, loadSteps[0], strings.Join(loadSteps[:2], ","), strings.Join(loadSteps, ","))
	}
	return len(got), nil
}

func main() {
	os.Exit(command.Main("scalebench", os.Args[1:], os.Stderr, parseFlags, run))
}

// result is one side's figures.
type result struct {
	Label  string
	Phases []phase
	Err    string `json:",omitempty"`
	// Failures are the load's API calls that failed (and were retried).
	Failures       []string
	Calls          []call
	Startup        startup
	Scheduler      throughput
	Commit         commitFigures
	LeaderChanges  float64
	PluginRestarts int
	// PluginsRelaunched counts plugins whose process changed during the
	// load (keelson only).
	PluginsRelaunched int
	Alive             bool
	Procs             []procUse
	LoadMean          float64
	LoadPeak          float64
}

// commitFigures is the raft commit latency over the load, in seconds.
type commitFigures struct {
	Source        string
	Count         float64
	P50, P90, P99 float64
}

func (r result) facts() sloFacts {
	return sloFacts{Calls: r.Calls, Startup: r.Startup, LeaderChanges: r.LeaderChanges, PluginRestarts: r.PluginRestarts, PluginsRelaunched: r.PluginsRelaunched, ProcessesAlive: r.Alive}
}

type figures struct {
	report.Machine
	Nodes, PodsCreated, PodsScaled int
	Rate                           float64
	Seconds                        float64
	Sides                          []result
}

func run(ctx context.Context, o options) error {
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	p, err := makePlan(planSpec{Nodes: o.nodes, PodsPerNode: o.podsPerNode, NodesPerNamespace: o.nodesPerNamespace, Seed: o.seed})
	if err != nil {
		return err
	}
	start := time.Now()
	f := figures{Machine: report.ThisMachine(), Nodes: o.nodes, Rate: o.rate}
	f.PodsCreated, f.PodsScaled = p.Pods()
	log.Info("plan", "nodes", o.nodes, "namespaces", len(p.Namespaces), "deployments", len(p.Deployments), "pods", f.PodsCreated, "scaled pods", f.PodsScaled)
	for _, name := range o.sides {
		r, err := runSide(ctx, log, o, name, p)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		f.Sides = append(f.Sides, r)
		if ctx.Err() != nil {
			log.Warn("interrupted: the report covers the sides run so far", "side", name)
			break
		}
	}
	f.Seconds = time.Since(start).Seconds()
	printReport(os.Stdout, f)
	if o.jsonPath != "" {
		if err := report.WriteJSON(o.jsonPath, f); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted after %s: %w", time.Since(start).Round(time.Second), context.Cause(ctx))
	}
	return nil
}

// runSide starts a side and kwok, creates the nodes, runs the load and
// measures. A load that fails still yields the figures taken so far, with
// the error in the result; only a side that cannot start is an error.
func runSide(ctx context.Context, log *slog.Logger, o options, name string, p plan) (result, error) {
	var s *side
	var err error
	if name == "keelson" {
		s, err = startKeelson(ctx, log, o)
	} else {
		s, err = startUpstream(ctx, o)
	}
	if err != nil {
		return result{}, err
	}
	defer s.stop()
	log.Info("side ready", "side", s.label, "dir", s.dir)
	kwok, err := startKwok(o, s)
	if err != nil {
		return result{}, err
	}
	defer kwok.Stop(10 * time.Second)
	// A kwok that exits ends the side at once: the steps would otherwise
	// wait their whole timeouts for nodes and pods nobody plays.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-kwok.Exited():
			cancel(kwok.Failure(errors.New("kwok exited during the run")))
		case <-ctx.Done():
		}
	}()
	procs := func() []namedPID { return append(s.procs(), namedPID{"kwok", kwok.PID()}) }

	cs, err := kubernetes.NewForConfig(s.bench)
	if err != nil {
		return result{}, err
	}
	retries := &retrier{attempts: 6, backoff: time.Second}
	if err := createNodes(ctx, log, cs, o.nodes, o.nodeRate, o.phaseTimeout, retries); err != nil {
		return result{}, kwok.Failure(err)
	}
	if s.settled != nil {
		if err := poll(ctx, log, o.phaseTimeout, "controllers started", func() (bool, string) { return s.settled(ctx) }); err != nil {
			return result{}, err
		}
	}
	lctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	t := newTracker()
	if err := t.run(lctx, cs); err != nil {
		return result{}, err
	}
	var loads loadSampler
	go loads.run(lctx, 10*time.Second)

	before, err := takeSnapshot(ctx, s, procs())
	if err != nil {
		return result{}, err
	}
	r := result{Label: s.label}
	r.Phases, err = runLoad(ctx, log, cs, t, p, o, retries)
	if err != nil {
		r.Err = err.Error()
	}
	r.Failures = retries.failures
	// An interrupted run (SIGINT cancels ctx) still measures what its load
	// did so far and reports it.
	mctx := context.WithoutCancel(ctx)
	after, err := takeSnapshot(mctx, s, procs())
	if err != nil {
		return r, err
	}
	r.LoadMean, r.LoadPeak = loads.summary()
	return r, r.fill(mctx, s, t, before, after, procs)
}

func (r *result) fill(ctx context.Context, s *side, t *tracker, before, after snapshot, procs func() []namedPID) error {
	req, err := histDelta(before.requests, after.requests)
	if err != nil {
		return err
	}
	r.Calls = calls(req)
	if len(r.Phases) > 0 {
		create := r.Phases[0]
		r.Startup = summarizeStartup(t.startups(create.Start, create.End))
		r.Scheduler = schedThroughput(t.binds(create.Start, create.End))
	}
	commit, err := histDelta(before.commit, after.commit)
	if err != nil {
		return err
	}
	h := commit[""]
	r.Commit.Source, r.Commit.Count = keelsonCommit+" (leader: append to commit)", h.Count()
	if s.etcdURL != "" {
		r.Commit.Source = etcdCommit + " (one member: its commit is the WAL fsync)"
	}
	r.Commit.P50, r.Commit.P90, r.Commit.P99 = h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99)
	r.LeaderChanges = maxDelta(before.leaderChanges, after.leaderChanges)
	r.PluginRestarts = -1
	if s.pluginRestarts != nil {
		if r.PluginRestarts, err = s.pluginRestarts(ctx); err != nil {
			return err
		}
	}
	r.PluginsRelaunched = relaunched(before.plugins, after.plugins)
	r.Alive = s.alive()
	r.Procs = processUse(procs(), before.cpu, after.cpu)
	return nil
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
