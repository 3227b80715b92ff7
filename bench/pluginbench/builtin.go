package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/bench/internal/latency"
	"github.com/keelson/keelson/bench/internal/procstat"
	"github.com/keelson/keelson/plugins/host"
)

// launcher is one way of running a built-in plugin.
type launcher struct {
	label string
	spec  func(name string) host.Spec
}

// builtinLaunchers are the two ways a built-in plugin has run: the keelson
// binary re-executed (`keelson plugin NAME`, before issue 23) and the slim
// multicall binary (`keelson-plugins NAME`, what the host runs now).
func builtinLaunchers(keelsonBin, pluginsBin string) []launcher {
	return []launcher{
		{"keelson plugin NAME", func(name string) host.Spec {
			return host.Spec{Name: name, Path: keelsonBin, Args: []string{"plugin", name}, Builtin: true}
		}},
		{"keelson-plugins NAME", func(name string) host.Spec {
			return host.Spec{Name: name, Path: pluginsBin, Args: []string{name}, Builtin: true}
		}},
	}
}

// footprint is what running copies of one plugin process measured.
type footprint struct {
	starts []time.Duration
	// Per process, after idling, in KiB.
	private, anon, pss []int64
	// rss is one process's resident set.
	rss int64
}

// builtinFootprint starts copies processes of each named built-in plugin
// through each launcher (a cluster runs some thirty plugin processes from
// one binary, so its code pages are shared, not private); every start is
// timed (Start to ready), then the processes idle for idle before their
// smaps_rollup is read. The plugins run with the admin's credentials and
// no objects to act on: this is their floor.
func builtinFootprint(ctx context.Context, w io.Writer, cfg host.Config, b builtinOptions) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "built-in plugin process (%d at once, idle %s)\tbinary\tstart p50 ms\tstart max ms\tprivate MiB\tanon MiB\tPSS MiB\tRSS MiB\n", b.copies, b.idle)
	for _, name := range b.names {
		for _, l := range b.launchers {
			sp := l.spec(name)
			if c, ok := b.configs[name]; ok {
				sp.Config = []byte(c)
			}
			f, err := measureBuiltin(ctx, cfg, sp, b.copies, b.idle)
			if err != nil {
				return fmt.Errorf("%s via %s: %w", name, l.label, err)
			}
			s := latency.Summarize(f.starts)
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", name, l.label, s.P50Ms, s.MaxMs,
				procstat.MiB(median(f.private)), procstat.MiB(median(f.anon)), procstat.MiB(median(f.pss)), procstat.MiB(f.rss))
		}
	}
	fmt.Fprintln(tw, "  (private: Private_Clean+Private_Dirty; anon: Anonymous; PSS and private are per process, medians)")
	return tw.Flush()
}

func measureBuiltin(ctx context.Context, cfg host.Config, sp host.Spec, copies int, idle time.Duration) (footprint, error) {
	var f footprint
	var pids []int
	var stops []func()
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for i := range copies {
		cp := sp
		cp.Name = fmt.Sprintf("%s-%d", sp.Name, i)
		d, pid, stop, err := startSpec(ctx, cfg, cp)
		if err != nil {
			return f, err
		}
		stops = append(stops, stop)
		f.starts = append(f.starts, d)
		pids = append(pids, pid)
	}
	time.Sleep(idle)
	for _, pid := range pids {
		r, err := procstat.ReadRollup(pid)
		if err != nil {
			return f, err
		}
		f.private, f.anon, f.pss = append(f.private, r.PrivateKiB), append(f.anon, r.AnonKiB), append(f.pss, r.PssKiB)
		f.rss = r.RssKiB
	}
	return f, nil
}

func median(v []int64) int64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
