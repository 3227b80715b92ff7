package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/keelson/keelson/bench/internal/procstat"
)

// part is the work a process does, so that each side's processes line up
// with the other side's doing the same work.
type part int

const (
	partAPI         part = iota // keelson server; etcd and kube-apiserver
	partControllers             // kcm's counterparts, their group; kube-controller-manager
	partScheduler               // the scheduler plugin; kube-scheduler
	partOther                   // keelson's plugins with no upstream process in the comparison
)

func (p part) String() string {
	return [...]string{"API server and store", "controllers", "scheduler", "no upstream counterpart"}[p]
}

// partOf says which part process name (as the sides name them) belongs to.
func partOf(name string) part {
	switch {
	case name == serverProcess || name == "etcd" || name == "kube-apiserver":
		return partAPI
	case name == "kube-controller-manager" || strings.HasPrefix(name, "group/"):
		return partControllers
	case name == "scheduler" || name == "kube-scheduler":
		return partScheduler
	}
	if _, ok := upstreamControllers[name]; ok {
		return partControllers
	}
	return partOther
}

// inTotal says whether a side's total counts part: in the controllers
// scope only the controllers (the rest is printed apart), in the
// control-plane scope everything.
func inTotal(sc scope, p part) bool {
	return sc == scopeControlPlane || p == partControllers
}

// figures adds up the processes of one phase.
type figures struct {
	n         int
	pss, anon int64 // KiB
}

func (f *figures) add(s sample) {
	f.n++
	f.pss += s.pss
	f.anon += s.mem.RssAnonKiB
}

// total adds up the processes of ph that keep(name) selects.
func (ph phase) total(keep func(name string) bool) figures {
	var f figures
	for name, s := range ph.procs {
		if keep(name) {
			f.add(s)
		}
	}
	return f
}

func mib(kib int64) string { return fmt.Sprintf("%.1f", procstat.MiB(kib)) }

func report(out io.Writer, sc scope, sides []side, w workload) {
	fmt.Fprintf(out, "\nMemory (MiB), -scope %s: idle (no workload), and loaded with %d pods (%d Deployments x %d replicas, a Service each; no nodes, pods pending)\n",
		sc, w.pods(), w.deployments, w.replicas)
	fmt.Fprintf(out, "kube-controller-manager --controllers (%d): %s\n", len(kcmControllers()), strings.Join(kcmControllers(), ","))
	if sc == scopeControllers {
		fmt.Fprintln(out, "Totals: the processes doing kube-controller-manager's work; the keelson-only plugins are listed apart below.")
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "side\tprocesses\tidle PSS\tidle private\tloaded PSS\tloaded private\tload avg idle/loaded\t")
	for _, s := range sides {
		keep := func(name string) bool { return inTotal(sc, partOf(name)) }
		idle, loaded := s.idle.total(keep), s.loaded.total(keep)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s / %s\t\n", s.label, loaded.n, mib(idle.pss), mib(idle.anon),
			mib(loaded.pss), mib(loaded.anon), s.idle.load, s.loaded.load)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nPer process (MiB; private is RssAnon), with a subtotal per part:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "side\tpart\tprocess\tidle PSS\tidle private\tloaded PSS\tloaded private\t")
	for _, s := range sides {
		s.breakdown(tw, sc)
	}
	tw.Flush()
}

// breakdown prints a row per process of s, grouped by part, and a
// subtotal row per part.
func (s side) breakdown(tw io.Writer, sc scope) {
	byPart := map[part][]string{}
	seen := map[string]bool{}
	for _, ph := range []phase{s.idle, s.loaded} {
		for name := range ph.procs {
			if !seen[name] {
				seen[name] = true
				byPart[partOf(name)] = append(byPart[partOf(name)], name)
			}
		}
	}
	for p := partAPI; p <= partOther; p++ {
		names := byPart[p]
		if len(names) == 0 {
			continue
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", s.label, p, n, cells(s.idle, n), cells(s.loaded, n))
		}
		if len(names) > 1 || !inTotal(sc, p) {
			in := func(name string) bool { return partOf(name) == p }
			idle, loaded := s.idle.total(in), s.loaded.total(in)
			label := "subtotal"
			if len(names) > 1 {
				label += fmt.Sprintf(" (%d processes)", len(names))
			}
			if !inTotal(sc, p) {
				label += ", not in the total"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.label, p, label, mib(idle.pss), mib(idle.anon), mib(loaded.pss), mib(loaded.anon))
		}
	}
}

// cells are process name's PSS and private cells of ph, "-" where it was
// not running.
func cells(ph phase, name string) string {
	s, ok := ph.procs[name]
	if !ok {
		return "-\t-"
	}
	return mib(s.pss) + "\t" + mib(s.mem.RssAnonKiB)
}
