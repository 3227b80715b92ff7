package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/plugins/proto"
)

// server implements proto.Server around a Plugin.
type server struct {
	p        Plugin
	logger   *slog.Logger
	versions []int
	// hostLost ends the process; nil when no watchdog runs.
	hostLost func(reason string)
	// shared is the group's informer factory when the plugin is a member
	// of a group process; nil otherwise.
	shared *sharedInformers
	// pluginStarted, if set (tests), runs right after the plugin's run is
	// started: whatever Run reports of its own must be reported before it.
	pluginStarted func()

	mu       sync.Mutex
	broker   *plugin.GRPCBroker
	cfg      *proto.Configuration
	running  bool
	stopping bool
	cancel   context.CancelFunc
	done     chan struct{}
}

func newServer(p Plugin, logger *slog.Logger) *server {
	return &server{p: p, logger: logger, versions: []int{proto.ProtocolVersion}}
}

// UseBroker keeps the connection's broker, on which a node's host serves
// its gossip member view.
func (s *server) UseBroker(b *plugin.GRPCBroker) {
	s.mu.Lock()
	s.broker = b
	s.mu.Unlock()
}

func (s *server) Describe(context.Context) (proto.Description, error) {
	return proto.Description{Name: s.p.Name, Kind: s.p.Kind, Version: s.p.Version, ProtocolVersions: s.versions, Rules: s.p.Rules}, nil
}

func (s *server) Configure(_ context.Context, c proto.Configuration) error {
	if err := c.Validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "plugin %s: %v", s.p.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		// The identity and term are fixed for a run: a new term means a new
		// leader, which restarts its plugins.
		return status.Errorf(codes.FailedPrecondition, "plugin %s: already running; restart it to reconfigure", s.p.Name)
	}
	if c.Node != "" && s.p.RunNode == nil {
		return status.Errorf(codes.FailedPrecondition, "plugin %s has no node part (RunNode); declare it with the leader's plugins, not with scope node", s.p.Name)
	}
	if c.Node == "" && s.p.Run == nil {
		return status.Errorf(codes.FailedPrecondition, "plugin %s is a node plugin only (no Run); declare it with scope node", s.p.Name)
	}
	s.cfg = &c
	return nil
}

func (s *server) Run(streamCtx context.Context, send func(proto.Status) error) error {
	env, runCtx, done, err := s.start()
	if err != nil {
		return err
	}
	updates := make(chan proto.Status, 64)
	env.report = func(st proto.Status) {
		select {
		case updates <- st:
		default:
			s.logger.Warn("status update dropped: host is not reading", "ready", st.Ready, "message", st.Message)
		}
	}
	if !s.p.ManualReady {
		// Reported before the plugin runs, so a message of its own cannot be
		// overtaken by this default one.
		env.Ready("running")
	}
	errc := make(chan error, 1)
	go func() {
		defer close(done)
		errc <- s.runPlugin(runCtx, env)
	}()
	if s.pluginStarted != nil {
		s.pluginStarted()
	}
	for {
		select {
		case st := <-updates:
			if err := send(st); err != nil {
				s.logger.Warn("sending status to host failed", "error", err)
			}
		case err := <-errc:
			return s.finish(err, updates, send)
		case <-streamCtx.Done():
			if s.isStopping() {
				<-done
				return nil
			}
			// The host's end of the stream went away without a Stop: the
			// host died or the connection broke. go-plugin will not
			// reconnect, so a plugin left running would be an orphan.
			s.mu.Lock()
			s.cancel()
			s.mu.Unlock()
			if s.hostLost != nil {
				s.hostLost("the host closed the Run stream without Stop")
			}
			return streamCtx.Err()
		}
	}
}

func (s *server) start() (Env, context.Context, chan struct{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg == nil {
		return Env{}, nil, nil, status.Errorf(codes.FailedPrecondition, "plugin %s: Run before Configure", s.p.Name)
	}
	if s.running {
		return Env{}, nil, nil, status.Errorf(codes.FailedPrecondition, "plugin %s: already running", s.p.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.running, s.stopping, s.cancel, s.done = true, false, cancel, make(chan struct{})
	env := Env{
		RESTConfig: restConfig(*s.cfg, s.p.Name, s.p.Version),
		Term:       s.cfg.Term,
		Config:     s.cfg.Config,
		Logger:     s.logger,
		Node:       s.cfg.Node,
		shared:     s.shared,
		member:     s.p.Name,
	}
	if id, b := s.cfg.MembersBroker, s.broker; id != 0 && b != nil {
		env.members = func() (*proto.MembersClient, error) { return proto.DialMembers(b, id) }
	}
	return env, ctx, s.done, nil
}

// finish reports how Run ended: a clean stop or the plugin's error, after
// the status updates it sent before returning.
func (s *server) finish(runErr error, updates chan proto.Status, send func(proto.Status) error) error {
	for {
		select {
		case st := <-updates:
			_ = send(st) // best effort: the final status below says the same
			continue
		default:
		}
		break
	}
	s.mu.Lock()
	s.running = false
	s.cancel()
	s.mu.Unlock()
	if runErr == nil {
		_ = send(proto.Status{Message: "stopped"})
		return nil
	}
	_ = send(proto.Status{Message: "failed", Error: runErr.Error()})
	return status.Error(codes.Aborted, runErr.Error())
}

func (s *server) runPlugin(ctx context.Context, env Env) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plugin %s panicked: %v", s.p.Name, r)
		}
	}()
	run := s.p.Run
	if env.Node != "" {
		run = s.p.RunNode
	}
	err = withConfigPrefix(s.p.Name, run(ctx, env))
	if err == nil && ctx.Err() == nil {
		err = errors.New("Run returned before the host asked the plugin to stop")
	}
	return err
}

func (s *server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *server) Stop(ctx context.Context, grace time.Duration) error {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	s.cancel()
	done := s.done
	s.mu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return status.Errorf(codes.DeadlineExceeded, "plugin %s did not stop within %s", s.p.Name, grace)
	case <-ctx.Done():
		return ctx.Err()
	}
}
