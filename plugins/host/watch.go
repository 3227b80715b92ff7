package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/plugins/proto"
)

// watch runs the plugin and follows its Run stream and pings until it fails
// or ctx ends.
func (s *Supervisor) watch(ctx context.Context, l *launch) (readyAt time.Time, err error) {
	sp := l.sp
	// The stream outlives ctx so that the plugin sees Stop before the stream
	// closes: a stream closed without Stop means "host gone" to the SDK.
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	stream, err := l.pc.Run(streamCtx)
	if err != nil {
		return time.Time{}, fmt.Errorf("plugin %s: Run: %w", sp.Name, err)
	}
	updates := make(chan proto.Status)
	ended := make(chan error, 1)
	go func() {
		for {
			st, err := stream.Recv()
			if err != nil {
				ended <- err
				return
			}
			select {
			case updates <- st:
			case <-streamCtx.Done():
				return
			}
		}
	}()

	var pingC <-chan time.Time // nil for a group's member: its group pings
	if !l.member {
		ping := s.cfg.Clock.NewTicker(s.cfg.PingInterval)
		defer ping.Stop()
		pingC = ping.Chan()
	}
	var renew <-chan time.Time // nil: never
	if !l.renewAt.IsZero() {
		renew = s.cfg.Clock.After(l.renewAt.Sub(s.cfg.Clock.Now()))
	}
	for {
		select {
		case <-ctx.Done():
			s.stopPlugin(l)
			return readyAt, nil
		case <-renew:
			l.log.Info("restarting plugin to renew its API credentials")
			s.stopPlugin(l)
			return readyAt, errRenew
		case st := <-updates:
			first := st.Ready && readyAt.IsZero()
			if first {
				readyAt = s.cfg.Clock.Now()
				l.log.Info("plugin ready", "message", st.Message)
			}
			s.update(sp.Name, func(ps *PluginStatus) {
				ps.Ready, ps.Message = st.Ready, st.Message
				if st.Error != "" {
					ps.LastError = st.Error
				}
				if !readyAt.IsZero() {
					ps.State = StateRunning
				}
			})
			if first {
				// After the status says running: the next plugin's launch
				// follows this one's ready.
				l.turn.release()
			}
		case err := <-ended:
			return readyAt, streamEndError(sp.Name, err)
		case <-pingC:
			if err := s.ping(l); err != nil {
				return readyAt, err
			}
		}
	}
}

// errRenew ends a run whose credentials are due for renewal: the plugin is
// started again at once, which is not a failure.
var errRenew = errors.New("credentials renewal")

// errConnectionLost matches a run whose stream broke at the transport (the
// plugin's process, or its group's, went away), not one the plugin ended.
var errConnectionLost = errors.New("connection to the plugin process lost")

type connectionLost struct{ error }

func (connectionLost) Is(target error) bool { return target == errConnectionLost }

func streamEndError(name string, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("plugin %s stopped on its own", name)
	}
	ended := fmt.Errorf("plugin %s failed: %s", name, status.Convert(err).Message())
	if status.Code(err) == codes.Unavailable {
		return connectionLost{ended}
	}
	return ended
}

// ping health-checks the plugin through go-plugin. A ping that does not
// return in time marks the plugin hung; go-plugin's Ping has no deadline of
// its own, so it runs aside and is abandoned (it returns when the
// connection closes).
func (s *Supervisor) ping(l *launch) error {
	if l.client.Exited() {
		return fmt.Errorf("plugin %s: process exited", l.sp.Name)
	}
	res := make(chan error, 1)
	go func() { res <- l.rpc.Ping() }()
	select {
	case err := <-res:
		if err != nil {
			return fmt.Errorf("plugin %s: ping failed: %w", l.sp.Name, err)
		}
		return nil
	case <-s.cfg.Clock.After(s.cfg.PingTimeout):
		l.hung = true
		return fmt.Errorf("plugin %s did not answer a ping within %s; killed as hung", l.sp.Name, s.cfg.PingTimeout)
	}
}

// stopPlugin asks the plugin to stop within StopGrace; cleanup kills it if
// it does not.
func (s *Supervisor) stopPlugin(l *launch) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace+s.cfg.PingTimeout)
	defer cancel()
	if err := l.pc.Stop(ctx, s.cfg.StopGrace); err != nil {
		l.log.Warn("plugin did not stop cleanly; killing it", "error", status.Convert(err).Message())
		l.hung = true
	}
}

// cleanup ends the process and returns when it is gone. go-plugin's Kill
// asks the plugin to shut down over RPC, which a hung plugin never answers,
// so a hung or slow plugin is SIGKILLed.
func (s *Supervisor) cleanup(l *launch) {
	defer l.stderr.Close()
	if l.hung && l.cmd.Process != nil {
		_ = l.cmd.Process.Kill()
	}
	done := make(chan struct{})
	go func() {
		l.client.Kill()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-s.cfg.Clock.After(s.cfg.StopGrace):
	}
	if l.cmd.Process != nil {
		_ = l.cmd.Process.Kill()
	}
	<-done
}
