// Command proxybench measures the node's service networking:
//
//   - time to program N Services with E ready endpoints each (ClusterIP,
//     one TCP port) on one node: from the proxier's start with synced caches
//     to all rules installed, for N = 1,000 and 10,000, in each proxy mode
//     (iptables: one iptables-restore; nftables: one netlink transaction);
//   - time from an EndpointSlice change (one endpoint replaced) to the
//     rules in place, with N services installed;
//   - the same rules installed the naive way, one iptables command per
//     chain and per rule (what a proxy built on go-iptables' Append alone
//     would do), within a time budget and extrapolated past it;
//   - cluster DNS queries per second for service names.
//
// The proxier runs against a fake API (client-go's fake clientset), so
// figures are the node's share alone, not the API server's. iptables
// changes happen in a private network namespace: the command re-executes
// itself under `unshare --net` and needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/bench/internal/report"
)

const childEnv = "KEELSON_PROXYBENCH_NETNS"

type results struct {
	report.Machine
	Program []programResult `json:"program"`
	DNS     dnsResult       `json:"dns"`
}

func main() {
	sizes := flag.String("services", "1000,10000", "service counts to program")
	modes := flag.String("modes", "iptables,nftables", "proxy modes to measure, side by side")
	endpoints := flag.Int("endpoints", 5, "ready endpoints per service")
	changes := flag.Int("changes", 10, "endpoint changes to time per size")
	naiveBudget := flag.Duration("naive-budget", 2*time.Minute, "time allowed to the naive approach per size (0: skip it)")
	naiveMax := flag.Int("naive-max-services", 1000, "largest size the naive approach is run for; larger ones are extrapolated from it")
	dnsDuration := flag.Duration("dns-duration", 10*time.Second, "how long to query the DNS server")
	dnsClients := flag.Int("dns-clients", 16, "concurrent DNS clients")
	jsonOut := flag.String("json", "", "also write the results to this JSON file")
	cpuProfile := flag.String("cpuprofile", "", "write a Go CPU profile of the measurements (kernel time in system calls included) to this file")
	flag.Parse()

	if os.Getenv(childEnv) == "" {
		os.Exit(reexec())
	}
	var ns []int
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "proxybench: -services: %q is not a positive number\n", s)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	res := results{Machine: report.ThisMachine()}
	ctx := context.Background()
	if *cpuProfile != "" {
		stop, err := startProfile(*cpuProfile)
		if err != nil {
			fail(err)
		}
		defer stop()
	}
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		fail(fmt.Errorf("bringing up lo in the private namespace: %w", err))
	}
	var naiveRate float64 // rules per second of the naive approach at the largest size run
	for _, n := range ns {
		for _, mode := range strings.Split(*modes, ",") {
			r, err := measure(ctx, strings.TrimSpace(mode), n, *endpoints, *changes, &naiveRate, *naiveBudget, *naiveMax)
			if err != nil {
				fail(err)
			}
			// Each result as it comes: a long run that is cut short keeps
			// what it measured.
			fmt.Fprintf(os.Stderr, "proxybench: %s, %d services: %d rules, %d chains, program %s, endpoint change p50 %.0f ms, p99 %.0f ms\n",
				r.Mode, r.Services, r.Rules, r.Chains, secs(r.ProgramSec), r.Change.P50Ms, r.Change.P99Ms)
			res.Program = append(res.Program, r)
		}
	}
	fmt.Fprintf(os.Stderr, "proxybench: DNS queries for %d services for %s\n", ns[len(ns)-1], *dnsDuration)
	d, err := benchDNS(ctx, ns[len(ns)-1], *dnsDuration, *dnsClients)
	if err != nil {
		fail(err)
	}
	res.DNS = d
	print(res)
	if *jsonOut != "" {
		if err := report.WriteJSON(*jsonOut, res); err != nil {
			fail(err)
		}
	}
}

// measure programs n services in mode and, in the iptables mode, the
// same rules one iptables call at a time (extrapolated past naiveMax from
// the rate at the largest size run).
func measure(ctx context.Context, mode string, n, e, changes int, naiveRate *float64, naiveBudget time.Duration, naiveMax int) (programResult, error) {
	fmt.Fprintf(os.Stderr, "proxybench: %s: programming %d services with %d endpoints each\n", mode, n, e)
	r, err := benchProgram(ctx, mode, n, e, changes)
	if err != nil || mode != "iptables" {
		return r, err
	}
	if naiveBudget > 0 && n <= naiveMax {
		fmt.Fprintf(os.Stderr, "proxybench: the same rules one iptables call at a time (budget %s)\n", naiveBudget)
		r.Naive, err = benchNaive(ctx, n, e, naiveBudget)
		if err != nil {
			return r, err
		}
		*naiveRate = r.Naive.RulesPerSec
	} else if *naiveRate > 0 {
		r.Naive = naiveResult{Extrapolated: true, RulesPerSec: *naiveRate,
			EstimatedSec: float64(r.Rules+r.Chains) / *naiveRate}
	}
	return r, nil
}

// startProfile profiles this process's CPU time into path until stop.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "proxybench:", err)
	os.Exit(1)
}

// reexec runs this command again in a private network namespace.
func reexec() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "proxybench: needs root (it programs iptables in a private network namespace); skipped")
		return 0
	}
	cmd := exec.Command("unshare", append([]string{"--net", os.Args[0]}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if e, ok := err.(*exec.ExitError); ok {
			return e.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "proxybench: unshare:", err)
		return 1
	}
	return 0
}

func print(res results) {
	fmt.Printf("proxybench: %s, %d CPUs\n\n", res.Platform, res.CPUs)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "mode\tservices\tendpoints\trules\tchains\tprogram (one transaction)\tendpoint change p50 / p99\tnaive (one iptables call per rule)")
	for _, r := range res.Program {
		naive := "not run"
		if r.Mode != "iptables" {
			naive = "-"
		}
		switch {
		case r.Naive.Extrapolated:
			naive = fmt.Sprintf("~%s (extrapolated at %.0f rules/s)", secs(r.Naive.EstimatedSec), r.Naive.RulesPerSec)
		case r.Naive.Done:
			naive = fmt.Sprintf("%s (%.0f rules/s)", secs(r.Naive.Sec), r.Naive.RulesPerSec)
		case r.Naive.Applied > 0:
			naive = fmt.Sprintf("%d of %d in %s (%.0f rules/s), ~%s in all", r.Naive.Applied, r.Rules+r.Chains, secs(r.Naive.Sec), r.Naive.RulesPerSec, secs(r.Naive.EstimatedSec))
		}
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%s\t%.0f / %.0f ms\t%s\n", r.Mode, r.Services, r.Endpoints, r.Rules, r.Chains, secs(r.ProgramSec),
			r.Change.P50Ms, r.Change.P99Ms, naive)
	}
	w.Flush()
	fmt.Printf("\nDNS: %.0f queries/s for service names (%d services, %d clients, UDP on loopback, p50 %.2f ms, p99 %.2f ms, %d errors)\n",
		res.DNS.QPS, res.DNS.Services, res.DNS.Clients, res.DNS.Latency.P50Ms, res.DNS.Latency.P99Ms, res.DNS.Errors)
}

func secs(s float64) string {
	if s >= 120 {
		return fmt.Sprintf("%.1f min", s/60)
	}
	return fmt.Sprintf("%.2f s", s)
}
