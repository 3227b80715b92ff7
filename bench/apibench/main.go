// Command apibench measures the Kubernetes API of keelson against upstream
// kube-apiserver on a real etcd: time to ready, ConfigMap creates/s and
// latency from concurrent client-go workers, and server memory idle and after
// the creates. The two sides run one after the other, never at once, and the
// figures are printed side by side. See bench/README.md.
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
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/command"
	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

// benchNamespace holds the ConfigMaps the creates make.
const benchNamespace = "apibench"

type options struct {
	keelsonBin   string
	apiserverBin string
	etcdBin      string
	sides        []string
	rounds       int
	workload     configmapload.Workload
	settle       time.Duration
	readyTimeout time.Duration
	workDir      string
	jsonPath     string
	// keelsonDebug is the keelson server's --debug-listen (pprof), if set.
	keelsonDebug string
}

var allSides = []string{"upstream", "keelson"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var sides string
	fs := flag.NewFlagSet("apibench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary (make build)")
	fs.StringVar(&o.apiserverBin, "apiserver-bin", "bin/kube-apiserver-ref", "upstream kube-apiserver binary (see scripts/bench-api.sh)")
	fs.StringVar(&o.etcdBin, "etcd-bin", "bin/etcd-ref", "reference etcd binary (go build -C bench/etcdref -o $PWD/bin/etcd-ref .)")
	fs.StringVar(&sides, "sides", strings.Join(allSides, ","), "sides to run, in this order, one after the other")
	fs.IntVar(&o.rounds, "rounds", 1, "run every side this many times, alternating the order, and report medians")
	fs.IntVar(&o.workload.Workers, "workers", 32, "concurrent client-go workers, each with one create in flight")
	fs.IntVar(&o.workload.Total, "configmaps", 10000, "ConfigMaps to create")
	fs.IntVar(&o.workload.DataKeys, "data-keys", 10, "data keys per ConfigMap")
	fs.IntVar(&o.workload.ValueSize, "value-bytes", 32, "bytes per data value")
	fs.DurationVar(&o.workload.MaxTime, "max-duration", 5*time.Minute, "stop the creates after this long and report what completed")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "wait before each memory reading (after ready, after the creates)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up on a server that is not ready after this long")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "parent of the servers' temporary data dirs")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	fs.StringVar(&o.keelsonDebug, "keelson-debug-listen", "", "serve the keelson server's pprof profiles here (its --debug-listen), to profile the API path under the load")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, s := range strings.Split(sides, ",") {
		if !slices.Contains(allSides, s) || slices.Contains(o.sides, s) {
			return o, fmt.Errorf("-sides %q: want a list of distinct names from %v", sides, allSides)
		}
		o.sides = append(o.sides, s)
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds %d: want at least 1", o.rounds)
	}
	if o.workload.Workers < 1 || o.workload.Total < 1 || o.workload.DataKeys < 0 || o.workload.ValueSize < 0 {
		return o, errors.New("-workers and -configmaps must be at least 1; -data-keys and -value-bytes at least 0")
	}
	return o, nil
}

func main() {
	os.Exit(command.Main("apibench", os.Args[1:], os.Stderr, parseFlags, func(ctx context.Context, o options) error {
		log := slog.New(slog.NewTextHandler(os.Stderr, nil))
		return run(ctx, log, o, os.Stdout)
	}))
}

func run(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	bins := map[string]string{"-keelson-bin": o.keelsonBin, "-apiserver-bin": o.apiserverBin, "-etcd-bin": o.etcdBin}
	for flagName, bin := range bins {
		if flagName == "-keelson-bin" && !slices.Contains(o.sides, "keelson") ||
			flagName != "-keelson-bin" && !slices.Contains(o.sides, "upstream") {
			continue
		}
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s %s: %w (build it first: scripts/bench-api.sh does)", flagName, bin, err)
		}
	}
	rep := newReport(o)
	perSide := map[string][]sideReport{}
	for r := range o.rounds {
		round := []sideReport{}
		for _, side := range sideOrder(o.sides, r) {
			start := func() (*stack, error) {
				return startKeelson(ctx, abs(o.keelsonBin), o.workDir, o.keelsonDebug, o.readyTimeout)
			}
			if side == "upstream" {
				start = func() (*stack, error) {
					return startUpstream(ctx, log, abs(o.apiserverBin), abs(o.etcdBin), o.workDir, o.readyTimeout)
				}
			}
			sr, err := measure(ctx, log, side, start, o)
			if err != nil {
				return fmt.Errorf("%s (round %d of %d): %w", side, r+1, o.rounds, err)
			}
			round = append(round, sr)
			perSide[side] = append(perSide[side], sr)
		}
		rep.Rounds = append(rep.Rounds, round)
	}
	for _, side := range o.sides {
		rep.Sides = append(rep.Sides, medianReport(perSide[side]))
	}
	printTable(out, rep)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, rep)
	}
	return nil
}

// measure starts one side, reads its memory idle, runs the creates, reads its
// memory again, and always stops it.
func measure(ctx context.Context, log *slog.Logger, label string, start func() (*stack, error), o options) (sideReport, error) {
	r := sideReport{Label: label, LoadAvgBefore: procstat.LoadAvg()}
	log.Info("starting", "side", label)
	s, err := start()
	if err != nil {
		return r, err
	}
	defer func() {
		s.stop()
		log.Info("stopped", "side", label)
	}()
	for _, p := range s.procs {
		r.Processes = append(r.Processes, p.Name+": "+p.CommandLine())
	}
	r.ReadySec, r.Stages = s.readySec, s.stages
	log.Info("ready", "side", label, "seconds", round(r.ReadySec), "dir", s.dir)

	if r.Idle, err = settleAndRead(ctx, s, o.settle); err != nil {
		return r, err
	}
	log.Info("creating", "side", label, "configmaps", o.workload.Total, "workers", o.workload.Workers)
	if r.Create, err = configmapload.Run(ctx, s.cfg, benchNamespace, o.workload); err != nil {
		if ctx.Err() != nil {
			return r, fmt.Errorf("interrupted during the creates: %w", ctx.Err())
		}
		if dead := s.alive(); dead != nil {
			return r, dead
		}
		return r, s.procs[len(s.procs)-1].Failure(err)
	}
	log.Info("created", "side", label, "configmaps", r.Create.Creates, "per_second", int(r.Create.CreatesPerSec),
		"p50_ms", round(r.Create.P50Ms), "p99_ms", round(r.Create.P99Ms))
	if r.Loaded, err = settleAndRead(ctx, s, o.settle); err != nil {
		return r, err
	}
	r.LoadAvgAfter = procstat.LoadAvg()
	return r, nil
}

func settleAndRead(ctx context.Context, s *stack, settle time.Duration) (memorySet, error) {
	select {
	case <-ctx.Done():
		return memorySet{}, ctx.Err()
	case <-time.After(settle):
	}
	if err := s.alive(); err != nil {
		return memorySet{}, err
	}
	return readMemorySet(s.procs)
}

// abs makes a binary path absolute so a relative -keelson-bin works whatever
// directory the servers run in.
func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}
