// Command ingressbench measures what an ingress data plane adds to a
// request: small GETs over HTTP/1.1 keep-alive connections on loopback to
// one backend, sent directly, through keelson's ingress data plane
// (plugins/builtin/ingress, the node part's proxy with its metrics) and
// through Traefik v3 (bin/traefik-ref, built from bench/traefikref) with
// its file provider routing the same Host and path to the same backend.
//
// Each load is run at 1 and 64 concurrent connections as fast as they go,
// and at 64 connections paced to a fixed total rate (moderate load); the
// backend and both proxies are child processes with the same GOMAXPROCS
// (-procs), the client is this process. The loads are run in interleaved
// rounds (direct, keelson, Traefik, then again) so that a change of the
// machine's load falls on every column alike. It prints requests/s and
// p50/p99 per column, and p50/p99 added over direct for each proxy.
// Without the Traefik binary the Traefik column is skipped, saying so.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/command"
)

type options struct {
	traefikBin string
	conns      []int
	rateConns  int
	rate       int
	duration   time.Duration
	rounds     int
	procs      int
	proxyGOGC  int // GOGC of the proxies (0: Go's default)
	ingresses  int // extra Ingresses keelson's data plane holds
	gcTrace    bool
	jsonOut    string
}

func main() {
	if role := os.Getenv(childEnv); role != "" {
		os.Exit(child(role))
	}
	os.Exit(command.Main("ingressbench", os.Args[1:], os.Stderr, parse, run))
}

func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("ingressbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.traefikBin, "traefik-bin", "bin/traefik-ref", "Traefik v3 binary (scripts/bench-ingress.sh builds it from bench/traefikref); missing: that column is skipped")
	conns := fs.String("conns", "1,64", "concurrent keep-alive connections of the unpaced loads, comma-separated")
	fs.IntVar(&o.rateConns, "rate-conns", 64, "connections of the paced (moderate) load")
	fs.IntVar(&o.rate, "rate", 1000, "requests/s of the paced load, all its connections together (0: no paced load)")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "time each load runs per round against each target")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; a column's figures pool its rounds")
	fs.IntVar(&o.procs, "procs", 1, "GOMAXPROCS of the backend and of each proxy")
	fs.IntVar(&o.proxyGOGC, "proxy-gogc", 0, "GOGC of each proxy, not of the backend or the client (0: Go's default, 100)")
	fs.IntVar(&o.ingresses, "ingresses", 0, "other Ingresses, each with a Service and an EndpointSlice, that keelson's data plane holds in its caches and table beside the bench route (its memory is reported)")
	fs.BoolVar(&o.gcTrace, "gctrace", false, "keelson's data plane alone runs with GODEBUG=gctrace=1: a line on stderr per garbage collection")
	fs.StringVar(&o.jsonOut, "json", "", "also write the figures to this JSON file")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.ingresses < 0 {
		return o, fmt.Errorf("-ingresses: %d is not a count; use 0 or more", o.ingresses)
	}
	if o.proxyGOGC < 0 {
		return o, fmt.Errorf("-proxy-gogc: %d is not a percentage; use a positive number, or 0 for Go's default", o.proxyGOGC)
	}
	for _, s := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-conns: %q is not a positive number", s)
		}
		o.conns = append(o.conns, n)
	}
	switch {
	case o.duration <= 0:
		return o, errors.New("-duration must be positive, e.g. 3s")
	case o.rounds <= 0:
		return o, errors.New("-rounds must be at least 1")
	case o.procs <= 0:
		return o, errors.New("-procs must be at least 1")
	case o.rate < 0 || (o.rate > 0 && o.rateConns <= 0):
		return o, errors.New("-rate must be 0 (no paced load) or positive, with -rate-conns at least 1")
	}
	return o, nil
}

// load is one kind of load: conns connections, unpaced (rate 0) or
// sending rate requests/s together.
type load struct {
	conns, rate int
}

func (l load) String() string {
	if l.rate == 0 {
		return strconv.Itoa(l.conns)
	}
	return fmt.Sprintf("%d@%d/s", l.conns, l.rate)
}

func (o options) loads() []load {
	var ls []load
	for _, c := range o.conns {
		ls = append(ls, load{conns: c})
	}
	if o.rate > 0 {
		ls = append(ls, load{conns: o.rateConns, rate: o.rate})
	}
	return ls
}

func run(ctx context.Context, o options) error {
	ts, stop, err := startTargets(ctx, o)
	defer stop()
	if err != nil {
		return err
	}
	res, err := measure(ctx, o, ts)
	if err != nil {
		return err
	}
	res.Ingresses, res.ProxyGOGC = o.ingresses, o.proxyGOGC
	res.Memory = memories(ts)
	return res.print(os.Stdout, o.jsonOut)
}
