package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/configmapload"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/bench/internal/report"
)

// fullReport is the -json document: the setup and every figure.
type fullReport struct {
	report.Machine
	Workload      configmapload.Workload `json:"workload"`
	Notes         []string               `json:"notes"`
	Throughput    []throughputRow        `json:"throughput"`
	Failover      []failoverRow          `json:"failover"`
	LoadAvgBefore string                 `json:"load_average_before"`
	LoadAvgAfter  string                 `json:"load_average_after"`
}

func newReport(o options) fullReport {
	raft := "keelson's default raft timeouts (config.DefaultServer: heartbeat and election 500 ms)"
	if len(o.serverArgs) > 0 {
		raft = "extra server flags: " + strings.Join(o.serverArgs, " ")
	}
	return fullReport{
		Machine:       report.ThisMachine(),
		Workload:      o.workload,
		LoadAvgBefore: procstat.LoadAvg(),
		Notes: []string{
			fmt.Sprintf("servers on %s, one cluster at a time, fresh temp dirs under %s; %s", strings.Join(o.addrs, ", "), o.workDir, raft),
			fmt.Sprintf("failover: %d repetitions per row: kill -9 the leader, write through a follower (the two in turn), restart the killed server, wait until every server names the same leader (and /readyz 200)", o.reps),
			fmt.Sprintf("failover writer: a new write every %v, each with a %v timeout, up to %d in flight; failover = kill to the acknowledgement of the first successful write issued after the kill (necessarily the new leader's); first ack = kill to the first success acknowledged after the kill, whenever issued", o.writer.Interval, o.writer.Timeout, o.writer.MaxInFlight),
			"throughput: " + o.workload.Describe() + "; a single-server cluster, then one 3-server cluster through a follower, then through the leader",
			"percentiles are nearest-rank: with 20 repetitions p99 is the maximum",
			"the load generator runs on the same CPUs as the servers",
		},
	}
}

// printReport writes the throughput table, the failover summary and every
// repetition.
func printReport(out io.Writer, rep fullReport) {
	fmt.Fprintf(out, "habench: %s %s, %d CPUs, load average %s / %s (before / after)\n", rep.GoVersion, rep.Platform, rep.CPUs, rep.LoadAvgBefore, rep.LoadAvgAfter)
	report.PrintNotes(out, rep.Notes)
	if len(rep.Throughput) > 0 {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "throughput (%d workers)\t|\tcreates/s\t|\tp50 / p99 (ms)\t\n", rep.Workload.Workers)
		for _, r := range rep.Throughput {
			fmt.Fprintf(tw, "%s\t|\t%s\t|\t%.1f / %.1f\t\n", r.Name, rateCell(r.Result), r.Result.P50Ms, r.Result.P99Ms)
		}
		tw.Flush()
		fmt.Fprintln(out)
	}
	if len(rep.Failover) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "failover (s)\t|\treps\t|\tp50\t|\tp99\t|\tmax\t|\tfirst ack p50 / p99\t|\telected p50 / p99\t|\ttimed out\t")
	for _, r := range rep.Failover {
		timedOut := 0
		for _, x := range r.Reps {
			if x.TimedOut {
				timedOut++
			}
		}
		fmt.Fprintf(tw, "%s: %s\t|\t%d\t|\t%.3f\t|\t%.3f\t|\t%.3f\t|\t%.3f / %.3f\t|\t%.3f / %.3f\t|\t%d\t\n", r.Name, r.Description,
			len(r.Reps), r.Failover.P50Sec, r.Failover.P99Sec, r.Failover.MaxSec, r.FirstAck.P50Sec, r.FirstAck.P99Sec,
			r.Elected.P50Sec, r.Elected.P99Sec, timedOut)
	}
	tw.Flush()
	for _, r := range rep.Failover {
		fmt.Fprintf(out, "\n%s repetitions:\n", r.Name)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  rep\tkilled\tthrough\tnew leader\tterm\telection start s\telected s\tfailover s\tfirst ack s\tfailed writes\trejoin s\t")
		for _, x := range r.Reps {
			f := fmt.Sprintf("%.3f", x.FailoverSec)
			if x.TimedOut {
				f = "> " + f + " (timed out)"
			}
			fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.3f\t%d\t%.1f\t\n", x.Rep, x.Killed, x.Target, x.NewLeader, x.TermAfter,
				step(x.DetectSec), step(x.ElectedSec), f, x.FirstAckSec, x.Failed, x.RejoinSec)
		}
		tw.Flush()
	}
}

// step formats a raft step's time, "?" when its log line was not found.
func step(sec float64) string {
	if sec < 0 {
		return "?"
	}
	return fmt.Sprintf("%.3f", sec)
}

func rateCell(r configmapload.Result) string {
	c := fmt.Sprintf("%.0f", r.CreatesPerSec)
	if r.Truncated {
		c += fmt.Sprintf(" (%d created, time cap)", r.Creates)
	}
	return c
}
