package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Group is the opt-in shared mode: several built-in plugins served by one
// process (sdk.ServeGroup), for the smallest machines. Each member is
// still its own plugin to the host: its own status, API identity (member
// Spec's name), config, term and restarts. A member whose run fails is
// restarted inside the process, alone; a process that dies or hangs takes
// every member with it, and is restarted with backoff. The group's own
// identity (Name) reads what the members' shared informers watch.
type Group struct {
	// Name names the group's process and its read identity; it must not be
	// a plugin's name.
	Name string
	// Process launches the group (BuiltinGroupSpec); its Config is unused.
	Process Spec
	// Members are names of built-in Specs given to New.
	Members []string
}

// BuiltinGroupSpec launches the members of group name from b, as one
// process.
func BuiltinGroupSpec(b BuiltinBinary, name string, members []string) Spec {
	b = b.serving(members...)
	args := append(slices.Clone(b.Prefix), append([]string{"group", name}, members...)...)
	return Spec{Name: name, Path: b.Path, Args: args, Builtin: true, SHA256: b.SHA256}
}

// validateGroups checks cfg.Groups against the specs: every member a
// built-in spec, in one group only; group names not plugin names.
func validateGroups(groups []Group, specs []Spec) error {
	byName := map[string]Spec{}
	for _, sp := range specs {
		byName[sp.Name] = sp
	}
	in := map[string]string{}
	for _, g := range groups {
		if _, clash := byName[g.Name]; clash || g.Name == "" {
			return fmt.Errorf("plugin group %q: a group needs a name that no plugin has", g.Name)
		}
		if err := g.Process.validate(); err != nil {
			return fmt.Errorf("plugin group %s: %w", g.Name, err)
		}
		if len(g.Members) == 0 {
			return fmt.Errorf("plugin group %s has no members", g.Name)
		}
		for _, m := range g.Members {
			sp, ok := byName[m]
			switch {
			case !ok:
				return fmt.Errorf("plugin group %s: member %s is not a configured plugin", g.Name, m)
			case !sp.Builtin:
				return fmt.Errorf("plugin group %s: member %s is not a built-in plugin; only built-ins share a process", g.Name, m)
			case in[m] != "":
				return fmt.Errorf("plugin group %s: member %s is already in group %s", g.Name, m, in[m])
			}
			in[m] = g.Name
		}
	}
	return nil
}

// grouped reports the group plugin name belongs to ("" for none).
func (s *Supervisor) grouped(name string) string {
	for _, g := range s.cfg.Groups {
		if slices.Contains(g.Members, name) {
			return g.Name
		}
	}
	return ""
}

// enabledMembers are g's members' specs that are not disabled.
func (s *Supervisor) enabledMembers(g Group) []Spec {
	var out []Spec
	for _, sp := range s.specs {
		if slices.Contains(g.Members, sp.Name) && !sp.Disabled {
			out = append(out, sp)
		}
	}
	return out
}

// superviseGroup runs g's process and its members until ctx ends or the
// process is refused, restarting the process with backoff when it fails.
func (s *Supervisor) superviseGroup(ctx context.Context, g Group, members []Spec, term uint64) {
	log := s.cfg.Logger.With("group", g.Name)
	bo := backoff{initial: s.cfg.InitialBackoff, max: s.cfg.MaxBackoff, reset: s.cfg.BackoffReset}
	each := func(f func(st *PluginStatus)) {
		for _, m := range members {
			s.update(m.Name, f)
		}
	}
	for {
		upAt, err := s.runGroupOnce(ctx, g, members, term)
		var ref *refusal
		switch {
		case ctx.Err() != nil:
			for _, m := range members {
				s.markStopped(m.Name)
			}
			return
		case errors.Is(err, errRenew):
			each(func(st *PluginStatus) { st.State, st.Ready, st.PID = StateStarting, false, 0 })
			continue
		case errors.As(err, &ref):
			log.Error("plugin group refused", "error", err)
			each(func(st *PluginStatus) { st.State, st.Ready, st.PID, st.LastError = StateRefused, false, 0, err.Error() })
			return
		}
		var healthyFor time.Duration
		if !upAt.IsZero() {
			healthyFor = s.cfg.Clock.Since(upAt)
		}
		wait := bo.failed(healthyFor)
		log.Warn("plugin group process failed; restarting every member after backoff", "error", err, "backoff", wait)
		msg := fmt.Sprintf("group %s process: %v", g.Name, err)
		each(func(st *PluginStatus) {
			st.State, st.Ready, st.PID = StateCrashLooping, false, 0
			st.LastError, st.Backoff = msg, wait
			st.Restarts++
		})
		select {
		case <-ctx.Done():
			for _, m := range members {
				s.markStopped(m.Name)
			}
			return
		case <-s.cfg.Clock.After(wait):
		}
		each(func(st *PluginStatus) { st.State, st.Backoff = StateStarting, 0 })
	}
}

// runGroupOnce starts g's process, configures the group's identity, runs
// every member in it (each restarted alone when its run fails) and pings
// the process until it fails or ctx ends. upAt is when the group was
// configured (zero if never).
func (s *Supervisor) runGroupOnce(ctx context.Context, g Group, members []Spec, term uint64) (upAt time.Time, err error) {
	turn, err := s.gate.acquire(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer turn.release()
	l, err := s.launchTagged(g.Process, "group")
	if err != nil {
		return time.Time{}, err
	}
	l.group = true
	defer func() {
		s.cleanup(l)
		var ref *refusal
		if err != nil && !errors.As(err, &ref) && l.cmd.ProcessState != nil {
			err = fmt.Errorf("%w (process %s)", err, l.cmd.ProcessState)
		}
	}()
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	if l.pc, err = s.dial(l, names); err != nil {
		return time.Time{}, err
	}
	if err := s.configure(ctx, l, term); err != nil {
		return time.Time{}, err
	}
	upAt = s.cfg.Clock.Now()
	turn.release() // the members start together: they are one process
	s.setClient(g.Name, l.pc)
	defer s.setClient(g.Name, nil)

	mctx, stopMembers := context.WithCancel(ctx)
	processGone := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.restartLoop(mctx, m.Name, func(ctx context.Context) (time.Time, error) {
				readyAt, err := s.runMember(ctx, l, m, term)
				if errors.Is(err, errConnectionLost) && processExits(l) {
					// The group's process died under this member: the group
					// restarts every member and counts that once, so the
					// member neither counts it nor retries on the dead
					// process. Its ping is asked to look now.
					select {
					case processGone <- struct{}{}:
					default:
					}
					<-ctx.Done()
				}
				return readyAt, err
			})
		}()
	}
	err = s.watchProcess(ctx, l, processGone)
	stopMembers() // each member is asked to Stop (watch) before the process is killed
	wg.Wait()
	return upAt, err
}

// runMember configures and runs one member inside the group process l.
func (s *Supervisor) runMember(ctx context.Context, l *launch, sp Spec, term uint64) (time.Time, error) {
	ml := &launch{sp: sp, cmd: l.cmd, client: l.client, rpc: l.rpc, pc: l.pc.Member(sp.Name),
		log: s.cfg.Logger.With("plugin", sp.Name), member: true}
	if l.cmd.Process != nil {
		s.update(sp.Name, func(st *PluginStatus) { st.PID = l.cmd.Process.Pid })
	}
	if err := s.configure(ctx, ml, term); err != nil {
		return time.Time{}, err
	}
	return s.watch(ctx, ml)
}

// watchProcess pings the group process until it fails, its group
// credentials are due for renewal (errRenew: the whole process restarts,
// as an isolated plugin does) or ctx ends (nil).
func (s *Supervisor) watchProcess(ctx context.Context, l *launch, processGone <-chan struct{}) error {
	ping := s.cfg.Clock.NewTicker(s.cfg.PingInterval)
	defer ping.Stop()
	var renew <-chan time.Time
	if !l.renewAt.IsZero() {
		renew = s.cfg.Clock.After(l.renewAt.Sub(s.cfg.Clock.Now()))
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew:
			l.log.Info("restarting plugin group to renew its API credentials")
			return errRenew
		case <-ping.Chan():
			if err := s.ping(l); err != nil {
				return err
			}
		case <-processGone:
			if err := s.ping(l); err != nil {
				return err
			}
		}
	}
}

// processExits reports whether l's process has exited or does so within a
// second: a process killed under its connection is reaped a moment after
// the connection breaks.
func processExits(l *launch) bool {
	for range 50 {
		if l.client.Exited() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l.client.Exited()
}
