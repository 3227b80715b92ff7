package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/keelson/keelson/bench/internal/procstat"
)

// plan is what the orchestrator runs against every server.
type plan struct {
	Warmup workload // unmeasured: connections up, leader settled, caches warm
	Runs   []workload
	Fill   workload // on a fresh instance, before reading RSS
	Settle time.Duration
	// Rounds repeats each workload's A B B A passes; more rounds average out
	// more of the noise from other tenants of the machine.
	Rounds int
	// WorkDir holds each instance's temp data dir; it should be on the disk
	// whose fsync cost the figures are meant to include.
	WorkDir string
}

// serverReport is every figure taken from one server.
type serverReport struct {
	Label    string          `json:"label"`
	Bin      string          `json:"bin"`
	Flavor   flavor          `json:"flavor"`
	Results  []result        `json:"results"`
	Fill     result          `json:"fill"`
	Memory   procstat.Memory `json:"memory_after_fill"`
	FillKeys int             `json:"fill_keys"`
	// FillCPUSeconds is the CPU time (user + system) the server process
	// spent during the fill: what a change to its garbage collection costs,
	// less disturbed by the machine's other load than puts/s.
	FillCPUSeconds float64 `json:"fill_cpu_seconds"`
}

// compare measures servers a and b: the runs with both instances up and the
// passes interleaved, then the fill and RSS on fresh instances one at a time.
func compare(ctx context.Context, log *slog.Logger, a, b serverSpec, p plan) ([2]serverReport, error) {
	var reps [2]serverReport
	for i, spec := range []serverSpec{a, b} {
		reps[i] = serverReport{Label: spec.Label, Bin: spec.Bin, Flavor: spec.Flavor, FillKeys: p.Fill.Total}
	}
	err := withServer(ctx, log, a, p.WorkDir, func(sa *server) error {
		return withServer(ctx, log, b, p.WorkDir, func(sb *server) error {
			results, err := interleave(ctx, log, [2]*server{sa, sb}, p)
			for i := range reps {
				reps[i].Results = results[i]
			}
			return err
		})
	})
	if err != nil {
		return reps, err
	}
	for i, spec := range []serverSpec{a, b} {
		if err := withServer(ctx, log, spec, p.WorkDir, func(s *server) error {
			return fillAndMeasure(ctx, log, s, p, &reps[i])
		}); err != nil {
			return reps, err
		}
	}
	return reps, nil
}

// interleave runs every workload in 2*Rounds passes per server, ordered
// A B B A per round, so load from other tenants of the machine that drifts during the
// bench lands on both servers alike instead of on whichever ran second.
func interleave(ctx context.Context, log *slog.Logger, s [2]*server, p plan) ([2][]result, error) {
	var out [2][]result
	for _, srv := range s {
		if _, err := runWorkload(ctx, []string{srv.endpoint}, p.Warmup); err != nil {
			return out, srv.failure(err)
		}
	}
	for _, w := range p.Runs {
		n := 2 * max(1, p.Rounds)
		half := w
		half.Total = (w.Total + n - 1) / n
		half.MaxDuration = w.MaxDuration / time.Duration(n)
		var passes [2][]sample
		for k := range 2 * n {
			i := []int{0, 1, 1, 0}[k%4]
			pass := half
			pass.KeyOffset = w.KeyOffset + uint64(len(passes[i])*half.Total)
			smp, err := runWorkload(ctx, []string{s[i].endpoint}, pass)
			if err != nil {
				return out, s[i].failure(err)
			}
			passes[i] = append(passes[i], smp)
			log.Debug("pass done", "server", s[i].spec.Label, "workload", w.Name, "pass", k,
				"puts_per_s", int(summarize(pass, smp).PutsPerSec))
		}
		for i := range s {
			r := summarize(w, passes[i]...)
			log.Info("workload done", "server", s[i].spec.Label, "workload", w.Name,
				"puts", r.Puts, "puts_per_s", int(r.PutsPerSec), "p50_ms", r.P50Ms, "p99_ms", r.P99Ms)
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}

// fillAndMeasure writes p.Fill's distinct keys into s, waits p.Settle, and
// records its resident memory.
func fillAndMeasure(ctx context.Context, log *slog.Logger, s *server, p plan, rep *serverReport) error {
	cpu0, err := procstat.CPUSeconds(s.pid())
	if err != nil {
		return s.failure(err)
	}
	smp, err := runWorkload(ctx, []string{s.endpoint}, p.Fill)
	if err != nil {
		return s.failure(err)
	}
	cpu1, err := procstat.CPUSeconds(s.pid())
	if err != nil {
		return s.failure(err)
	}
	rep.FillCPUSeconds = cpu1 - cpu0
	rep.Fill = summarize(p.Fill, smp)
	log.Info("fill done", "server", s.spec.Label, "keys", rep.Fill.Puts, "puts_per_s", int(rep.Fill.PutsPerSec))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(p.Settle):
	}
	if rep.Memory, err = procstat.ReadMemory(s.pid()); err != nil {
		return s.failure(err)
	}
	return nil
}

// withServer runs fn against a fresh instance of spec and always stops it.
func withServer(ctx context.Context, log *slog.Logger, spec serverSpec, workDir string, fn func(*server) error) error {
	s, err := startServer(ctx, spec, workDir)
	if err != nil {
		return err
	}
	log.Info("server ready", "server", spec.Label, "pid", s.pid(), "endpoint", s.endpoint, "dir", s.dir)
	defer func() {
		s.stop()
		log.Info("server stopped", "server", spec.Label, "pid", s.pid())
	}()
	return fn(s) // fn's errors already name the server (server.failure)
}
