// Command kvbench measures etcd v3 put throughput and latency.
//
// With -endpoints it loads a running server. With -etcd-bin and -keelson-bin
// it starts each server itself (single member, fresh data dir, loopback),
// runs the same workloads against both, and prints them side by side with
// each server's RSS after a fill of distinct keys. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/command"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

type options struct {
	endpoints   string
	clients     int
	conns       int
	total       int
	maxDuration time.Duration

	etcdBin       string
	keelsonBin    string
	keelsonIsEtcd bool
	soloTotal     int
	manyClients   int
	manyTotal     int
	fillKeys      int
	settle        time.Duration
	workDir       string
	jsonPath      string
	verbose       bool
	rounds        int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("kvbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoints, "endpoints", "", "load an already running server at host:port[,host:port] instead of starting servers")
	fs.IntVar(&o.clients, "clients", 1, "with -endpoints: concurrent clients")
	fs.IntVar(&o.conns, "conns", 0, fmt.Sprintf("with -endpoints: shared gRPC connections (0: ceil(clients/%d))", clientsPerConn))
	fs.IntVar(&o.total, "total", 3000, "with -endpoints: puts to issue")
	fs.DurationVar(&o.maxDuration, "max-duration", 30*time.Second, "stop any one workload after this long and report what completed")
	fs.StringVar(&o.etcdBin, "etcd-bin", "", "reference etcd binary (go build -C bench/etcdref -o $PWD/bin/etcd-ref .)")
	fs.StringVar(&o.keelsonBin, "keelson-bin", "", "keelson binary")
	fs.BoolVar(&o.keelsonIsEtcd, "keelson-is-etcd", false, "harness check: -keelson-bin is an etcd binary; start it with etcd flags")
	fs.IntVar(&o.soloTotal, "solo-total", 3000, "puts in the 1-client workload")
	fs.IntVar(&o.manyClients, "many-clients", 100, "clients in the concurrent workload")
	fs.IntVar(&o.manyTotal, "many-total", 60000, "puts in the concurrent workload")
	fs.IntVar(&o.fillKeys, "fill-keys", 100000, "distinct keys written before reading RSS")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the fill before reading RSS")
	fs.StringVar(&o.workDir, "work-dir", os.TempDir(), "parent of the servers' temporary data dirs")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	fs.IntVar(&o.rounds, "rounds", 1, "A B B A rounds per workload; each pass issues total/(2*rounds) puts")
	fs.BoolVar(&o.verbose, "v", false, "log every pass, not only every workload")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.endpoints == "" && (o.etcdBin == "" || o.keelsonBin == "") {
		return o, errors.New("give -endpoints host:port, or both -etcd-bin and -keelson-bin")
	}
	return o, nil
}

func main() {
	os.Exit(command.Main("kvbench", os.Args[1:], os.Stderr, parseFlags, func(ctx context.Context, o options) error {
		if o.endpoints != "" {
			return runEndpoints(ctx, o, os.Stdout)
		}
		level := slog.LevelInfo
		if o.verbose {
			level = slog.LevelDebug
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
		return runCompare(ctx, log, o, os.Stdout)
	}))
}

func runEndpoints(ctx context.Context, o options, out io.Writer) error {
	w := workload{Name: fmt.Sprintf("put %d clients", o.clients), Clients: o.clients, Conns: o.conns,
		Total: o.total, MaxDuration: o.maxDuration, KeyOffset: uint64(time.Now().UnixNano())}
	s, err := runWorkload(ctx, strings.Split(o.endpoints, ","), w)
	if err != nil {
		return err
	}
	r := summarize(w, s)
	printResult(out, o.endpoints, r)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, r)
	}
	return nil
}

func (o options) plan() plan {
	// Disjoint key ranges keep every measured put a create, never an update.
	return plan{
		Warmup: workload{Name: "warmup", Clients: 10, Total: 500, MaxDuration: 10 * time.Second, KeyOffset: 0xf000_0000},
		Runs: []workload{
			{Name: "put 1 client", Clients: 1, Total: o.soloTotal, MaxDuration: o.maxDuration, KeyOffset: 0},
			{Name: fmt.Sprintf("put %d clients", o.manyClients), Clients: o.manyClients, Total: o.manyTotal,
				MaxDuration: o.maxDuration, KeyOffset: 0x1000_0000},
		},
		Fill:    workload{Name: "fill", Clients: 100, Total: o.fillKeys, MaxDuration: 4 * o.maxDuration},
		Settle:  o.settle,
		Rounds:  o.rounds,
		WorkDir: o.workDir,
	}
}

func runCompare(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	keelson := serverSpec{Label: "keelson", Bin: o.keelsonBin, Flavor: flavorKeelson}
	if o.keelsonIsEtcd {
		keelson.Label, keelson.Flavor = "etcd(as-keelson)", flavorEtcd
	}
	for flagName, bin := range map[string]string{"-etcd-bin": o.etcdBin, "-keelson-bin": o.keelsonBin} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s %s: %w (build it first; see bench/README.md)", flagName, bin, err)
		}
	}
	loadBefore := procstat.LoadAvg()
	reports, err := compare(ctx, log, serverSpec{Label: "etcd", Bin: o.etcdBin, Flavor: flavorEtcd}, keelson, o.plan())
	if err != nil {
		return err
	}
	full := newReport(o.plan(), reports[:])
	full.Notes = append(full.Notes, fmt.Sprintf("1-minute load average before %s, after %s (other processes skew figures on a shared machine)", loadBefore, procstat.LoadAvg()))
	printTable(out, full)
	if o.jsonPath != "" {
		return report.WriteJSON(o.jsonPath, full)
	}
	return nil
}
