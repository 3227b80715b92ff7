// Package host launches and supervises Keelson's plugin processes on the
// raft leader: it starts every enabled plugin over go-plugin (gRPC, AutoMTLS,
// checksummed third-party binaries), hands each its API identity and term,
// watches its health, restarts it with backoff and reports its state.
package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/keelson/keelson/plugins/proto"
)

// State is a plugin's lifecycle state as users see it.
type State string

// The plugin states.
const (
	// StateStarting: the process is launching or has not reported ready.
	StateStarting State = "starting"
	// StateRunning: the plugin reported ready at least once in this run.
	StateRunning State = "running"
	// StateCrashLooping: the plugin failed and waits for its restart.
	StateCrashLooping State = "crash-looping"
	// StateDisabled: the plugin is configured off.
	StateDisabled State = "disabled"
	// StateRefused: the host will not run the binary (checksum mismatch,
	// missing checksum, incompatible protocol) until the next Start.
	StateRefused State = "refused"
	// StateStopped: the supervisor is not running (this server is not the
	// leader).
	StateStopped State = "stopped"
	// StateWaiting: the leader does not have the plugin's executable yet
	// (an installed plugin whose executable is being fetched from the
	// other servers); LastError says why it is still missing.
	StateWaiting State = "waiting"
)

// PluginStatus is one plugin's state, for `keelson plugins` and the
// cluster's plugin status object.
type PluginStatus struct {
	Name    string
	Kind    proto.Kind
	Version string
	State   State
	// Ready and Message are the plugin's latest health report.
	Ready   bool
	Message string
	// LastError is why the plugin last failed or was refused.
	LastError string
	// Restarts counts restarts since Start.
	Restarts int
	// Backoff is the wait before the pending restart (crash-looping only).
	Backoff time.Duration
	// PID is the plugin's process id while it runs, else 0.
	PID int
	// Term is the raft term the plugin was started in.
	Term uint64
	// Since is when State last changed.
	Since time.Time
}

// Supervisor runs a fixed set of plugins while this server leads.
type Supervisor struct {
	cfg   Config
	specs []Spec
	// noParentDeathSignal lets tests prove the SDK's watchdog alone ends
	// orphaned plugins.
	noParentDeathSignal bool

	// gate bounds the plugins starting at once (Config.StartConcurrency).
	gate *startGate

	mu      sync.Mutex
	status  map[string]*PluginStatus
	clients map[string]*proto.Client // of the plugins configured and running
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	running bool
}

// New checks cfg and specs; nothing starts before Start.
func New(cfg Config, specs []Spec) (*Supervisor, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Supervisor{cfg: cfg, specs: slices.Clone(specs), status: make(map[string]*PluginStatus),
		gate: newStartGate(cfg.StartConcurrency, cfg.Clock, cfg.StartHold)}
	for _, sp := range specs {
		if err := sp.validate(); err != nil {
			return nil, err
		}
		if _, dup := s.status[sp.Name]; dup {
			return nil, fmt.Errorf("plugin %s is configured twice", sp.Name)
		}
		st := &PluginStatus{Name: sp.Name, State: StateStopped, Since: cfg.Clock.Now()}
		if sp.Disabled {
			st.State = StateDisabled
		}
		s.status[sp.Name] = st
	}
	if err := validateGroups(cfg.Groups, specs); err != nil {
		return nil, err
	}
	return s, nil
}

// Start launches every enabled plugin for the given raft term and returns;
// plugins run until Stop or until ctx (the leadership) ends. Call Stop
// before starting again for a new term, even when ctx ended: Stop is what
// waits for the old term's processes to be gone.
func (s *Supervisor) Start(ctx context.Context, term uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return errors.New("plugin host: already started; Stop before starting for a new term")
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.running = true
	for _, sp := range s.specs {
		if sp.Disabled {
			// Published once per term, so users see what is configured off.
			if st := s.status[sp.Name]; s.cfg.OnChange != nil {
				st.Term = term
				s.cfg.OnChange(*st)
			}
			continue
		}
		st := s.status[sp.Name]
		*st = PluginStatus{Name: sp.Name, State: StateStarting, Term: term, Since: s.cfg.Clock.Now()}
		if s.cfg.OnChange != nil {
			// Under the lock, unlike update: a plugin goroutine's first change
			// must not overtake this one.
			s.cfg.OnChange(*st)
		}
		if s.grouped(sp.Name) != "" {
			continue // its group's process runs it (below)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.supervise(ctx, sp, term)
		}()
	}
	for _, g := range s.cfg.Groups {
		if members := s.enabledMembers(g); len(members) > 0 {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.superviseGroup(ctx, g, members, term)
			}()
		}
	}
	return nil
}

// Stop stops every plugin and returns when all their processes are gone.
func (s *Supervisor) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.cancel()
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
}

// Status returns every plugin's state, in configuration order.
func (s *Supervisor) Status() []PluginStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PluginStatus, 0, len(s.specs))
	for _, sp := range s.specs {
		out = append(out, *s.status[sp.Name])
	}
	return out
}

// update changes one plugin's status under the lock, stamping Since when
// the state changes.
func (s *Supervisor) update(name string, f func(st *PluginStatus)) {
	s.mu.Lock()
	st := s.status[name]
	before := *st
	f(st)
	if st.State != before.State {
		st.Since = s.cfg.Clock.Now()
	}
	after := *st
	s.mu.Unlock()
	if s.cfg.OnChange != nil && after != before {
		s.cfg.OnChange(after)
	}
}

// supervise restarts one plugin with exponential backoff until ctx ends or
// the plugin is refused.
func (s *Supervisor) supervise(ctx context.Context, sp Spec, term uint64) {
	if s.restartLoop(ctx, sp.Name, func(ctx context.Context) (time.Time, error) { return s.runOnce(ctx, sp, term) }) {
		s.markStopped(sp.Name)
	}
}

// restartLoop calls run for plugin name again and again, with exponential
// backoff after failures, until ctx ends (it returns true) or the plugin
// is refused (false).
func (s *Supervisor) restartLoop(ctx context.Context, name string, run func(context.Context) (time.Time, error)) (stopped bool) {
	log := s.cfg.Logger.With("plugin", name)
	bo := backoff{initial: s.cfg.InitialBackoff, max: s.cfg.MaxBackoff, reset: s.cfg.BackoffReset}
	for {
		readyAt, err := run(ctx)
		if ctx.Err() != nil {
			return true
		}
		if errors.Is(err, errRenew) {
			s.update(name, func(st *PluginStatus) { st.State, st.Ready, st.PID = StateStarting, false, 0 })
			continue
		}
		var ref *refusal
		if errors.As(err, &ref) {
			log.Error("plugin refused", "error", err)
			s.update(name, func(st *PluginStatus) {
				st.State, st.Ready, st.PID, st.LastError = StateRefused, false, 0, err.Error()
			})
			return false
		}
		var healthyFor time.Duration
		if !readyAt.IsZero() {
			healthyFor = s.cfg.Clock.Since(readyAt)
		}
		wait := bo.failed(healthyFor)
		log.Warn("plugin failed; restarting after backoff", "error", err, "backoff", wait)
		s.update(name, func(st *PluginStatus) {
			st.State, st.Ready, st.PID = StateCrashLooping, false, 0
			st.LastError, st.Backoff = err.Error(), wait
			st.Restarts++
		})
		select {
		case <-ctx.Done():
			return true
		case <-s.cfg.Clock.After(wait):
		}
		s.update(name, func(st *PluginStatus) { st.State, st.Backoff = StateStarting, 0 })
	}
}

func (s *Supervisor) markStopped(name string) {
	s.update(name, func(st *PluginStatus) {
		st.State, st.Ready, st.PID, st.Backoff = StateStopped, false, 0, 0
		st.Message = s.cfg.StoppedMessage
	})
}

// backoff is the restart delay policy: initial, doubling up to max, back to
// initial once a run stayed ready for reset.
type backoff struct {
	initial, max, reset time.Duration
	next                time.Duration
}

// failed records a failure after a run that was ready for healthyFor and
// returns how long to wait before the restart.
func (b *backoff) failed(healthyFor time.Duration) time.Duration {
	if b.next == 0 || healthyFor >= b.reset {
		b.next = b.initial
	}
	wait := b.next
	b.next = min(2*b.next, b.max)
	return wait
}

// refusal is a failure that restarting cannot fix.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func refusef(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}

// Refuse marks err as a failure restarting cannot fix: returned from an
// AuthorizeFunc, the plugin is left in state Refused with err as its last
// error instead of being restarted with backoff.
func Refuse(err error) error { return &refusal{msg: err.Error()} }
