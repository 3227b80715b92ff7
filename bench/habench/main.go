// Command habench measures keelson as a 3-server cluster on one host: how
// long writes stop when the raft leader is killed (kill -9 to the first
// successful write through a surviving server, over many repetitions), and
// ConfigMap create throughput through one server of the cluster (a follower,
// then the leader) against a single-server cluster. Every server runs on its
// own loopback address (127.0.0.1, .2, .3). See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/command"
	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/hacluster"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
	"k8s.io/klog/v2"
)

type options struct {
	keelsonBin      string
	serverArgs      []string
	addrs           []string
	reps            int
	rows            []string
	throughput      bool
	workload        configmapload.Workload
	writer          writerSpec
	failoverTimeout time.Duration
	settle          time.Duration
	readyTimeout    time.Duration
	workDir         string
	jsonPath        string
	verbose         bool
}

// allRows are the failover rows: writes through the Kubernetes API, and
// through the etcd API of a store-only cluster.
var allRows = []string{"api", "etcd"}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var addrs, rows, serverArgs string
	fs := flag.NewFlagSet("habench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.keelsonBin, "keelson-bin", "bin/keelson", "keelson binary (make build)")
	fs.StringVar(&serverArgs, "server-args", "", "extra `keelson server` flags for every server, space-separated (e.g. \"--raft-heartbeat-timeout 500ms\"); default: none, keelson's defaults")
	fs.StringVar(&addrs, "addrs", "127.0.0.1,127.0.0.2,127.0.0.3", "loopback addresses of the three servers; the first also serves the single-server run")
	fs.IntVar(&o.reps, "reps", 20, "leader kills per failover row")
	fs.StringVar(&rows, "failover", strings.Join(allRows, ","), "failover rows to run: api (ConfigMap creates), etcd (Puts, store-only cluster); empty for none")
	fs.BoolVar(&o.throughput, "throughput", true, "run the create throughput rows (single server, 3-server follower and leader)")
	fs.IntVar(&o.workload.Workers, "workers", 32, "concurrent client-go workers of the throughput rows")
	fs.IntVar(&o.workload.Total, "configmaps", 3000, "ConfigMaps each throughput row creates")
	fs.IntVar(&o.workload.DataKeys, "data-keys", 10, "data keys per ConfigMap")
	fs.IntVar(&o.workload.ValueSize, "value-bytes", 32, "bytes per data value")
	fs.DurationVar(&o.workload.MaxTime, "max-duration", 2*time.Minute, "stop a throughput row after this long and report what completed")
	fs.DurationVar(&o.writer.Interval, "write-interval", 10*time.Millisecond, "failover writer: time between attempts (the figure's resolution)")
	fs.DurationVar(&o.writer.Timeout, "write-timeout", time.Second, "failover writer: timeout of one attempt")
	fs.DurationVar(&o.failoverTimeout, "failover-timeout", 30*time.Second, "count a repetition as timed out after this long without a successful write")
	fs.DurationVar(&o.settle, "settle", time.Second, "wait after the cluster is healthy before the next kill")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 3*time.Minute, "give up on a cluster not healthy after this long (start, or rejoin after a kill)")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "parent of the servers' temporary data dirs")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	fs.BoolVar(&o.verbose, "v", false, "log every server start")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.serverArgs = strings.Fields(serverArgs)
	o.addrs = strings.Split(addrs, ",")
	if len(o.addrs) != 3 {
		return o, fmt.Errorf("-addrs %q: want three addresses", addrs)
	}
	for i, a := range o.addrs {
		if ip := net.ParseIP(a); ip == nil || !ip.IsLoopback() || slices.Contains(o.addrs[:i], a) {
			return o, fmt.Errorf("-addrs %q: want three distinct loopback IPs (127.0.0.0/8)", addrs)
		}
	}
	if rows != "" {
		for _, r := range strings.Split(rows, ",") {
			if !slices.Contains(allRows, r) || slices.Contains(o.rows, r) {
				return o, fmt.Errorf("-failover %q: want a list of distinct names from %v", rows, allRows)
			}
			o.rows = append(o.rows, r)
		}
	}
	if o.reps < 1 || o.workload.Workers < 1 || o.workload.Total < 1 || o.workload.DataKeys < 0 || o.workload.ValueSize < 0 {
		return o, errors.New("-reps, -workers and -configmaps must be at least 1; -data-keys and -value-bytes at least 0")
	}
	if o.writer.Interval <= 0 || o.writer.Timeout <= 0 {
		return o, errors.New("-write-interval and -write-timeout must be positive")
	}
	o.writer.MaxInFlight = int(o.writer.Timeout/o.writer.Interval) + 1
	return o, nil
}

func main() {
	os.Exit(command.Main("habench", os.Args[1:], os.Stderr, parseFlags, func(ctx context.Context, o options) error {
		level := slog.LevelInfo
		if o.verbose {
			level = slog.LevelDebug
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		// client-go logs every request the failover writer's timeout cancels;
		// the writer records those outcomes itself.
		klog.SetSlogLogger(slog.New(slog.DiscardHandler))
		return run(ctx, log, o, os.Stdout)
	}))
}

func run(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	if _, err := os.Stat(o.keelsonBin); err != nil {
		return fmt.Errorf("-keelson-bin %s: %w (run 'make build' first)", o.keelsonBin, err)
	}
	bin := abs(o.keelsonBin)
	rep := newReport(o)
	if o.throughput {
		rows, err := throughputRows(ctx, log, bin, o)
		if err != nil {
			return err
		}
		rep.Throughput = rows
	}
	for _, name := range o.rows {
		spec := hacluster.Spec{Label: name, Bin: bin, WorkDir: o.workDir, Addrs: o.addrs, APIServer: name == "api", ExtraArgs: o.serverArgs}
		row, err := withCluster(ctx, log, spec, o.readyTimeout, func(c *hacluster.Cluster) (failoverRow, error) {
			return runFailover(ctx, log, c, name, o)
		})
		if err != nil {
			return err
		}
		rep.Failover = append(rep.Failover, row)
	}
	rep.LoadAvgAfter = procstat.LoadAvg()
	printReport(out, rep)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, rep)
	}
	return nil
}

// throughputRows runs the create workload on a single-server cluster, then
// through a follower and through the leader of a 3-server cluster, one
// cluster at a time.
func throughputRows(ctx context.Context, log *slog.Logger, bin string, o options) ([]throughputRow, error) {
	single := hacluster.Spec{Label: "single", Bin: bin, WorkDir: o.workDir, Addrs: o.addrs[:1], APIServer: true, ExtraArgs: o.serverArgs}
	one, err := withCluster(ctx, log, single, o.readyTimeout, func(c *hacluster.Cluster) (throughputRow, error) {
		return runThroughput(ctx, log, c, c.Servers[0], "1 server", "habench-single", o.workload)
	})
	if err != nil {
		return nil, err
	}
	three := hacluster.Spec{Label: "three", Bin: bin, WorkDir: o.workDir, Addrs: o.addrs, APIServer: true, ExtraArgs: o.serverArgs}
	rows, err := withCluster(ctx, log, three, o.readyTimeout, func(c *hacluster.Cluster) ([]throughputRow, error) {
		leader, _, err := c.WaitHealthy(ctx, o.readyTimeout)
		if err != nil {
			return nil, err
		}
		f, err := runThroughput(ctx, log, c, c.Followers(leader)[0], "3 servers, via a follower", "habench-follower", o.workload)
		if err != nil {
			return nil, err
		}
		// The follower's run may have moved the leadership.
		if leader, _, err = c.WaitHealthy(ctx, o.readyTimeout); err != nil {
			return nil, err
		}
		l, err := runThroughput(ctx, log, c, leader, "3 servers, via the leader", "habench-leader", o.workload)
		return []throughputRow{f, l}, err
	})
	return append([]throughputRow{one}, rows...), err
}

// withCluster starts the cluster spec describes, runs f on it, and always
// stops it.
func withCluster[T any](ctx context.Context, log *slog.Logger, spec hacluster.Spec, timeout time.Duration, f func(*hacluster.Cluster) (T, error)) (T, error) {
	var zero T
	log.Info("starting cluster", "cluster", spec.Label, "servers", len(spec.Addrs), "kube_apiserver", spec.APIServer)
	start := time.Now()
	c, err := hacluster.Start(ctx, log, spec, timeout)
	if err != nil {
		return zero, fmt.Errorf("start %s cluster: %w", spec.Label, err)
	}
	defer func() {
		c.Stop()
		log.Info("stopped cluster", "cluster", spec.Label)
	}()
	log.Info("cluster healthy", "cluster", spec.Label, "seconds", round3(time.Since(start).Seconds()), "dir", c.Dir)
	return f(c)
}

// abs makes a binary path absolute so a relative -keelson-bin works whatever
// directory the servers run in.
func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
