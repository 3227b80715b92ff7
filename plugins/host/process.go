package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/internal/hclogbridge"
	"github.com/keelson/keelson/plugins/proto"
)

// launch is one run of one plugin process.
type launch struct {
	sp     Spec
	cmd    *exec.Cmd
	client *plugin.Client
	rpc    plugin.ClientProtocol
	pc     *proto.Client
	log    *slog.Logger
	stderr io.WriteCloser
	// hung makes the cleanup SIGKILL the process before asking go-plugin to
	// shut it down, which would wait on an RPC the plugin cannot answer.
	hung bool
	// runAs, for a third-party plugin when Config.RunAs is set, is the
	// identity it runs as.
	runAs *RunAs
	// renewAt is when the plugin's credentials must be replaced: it is
	// stopped gracefully and started again with new ones (zero: never).
	renewAt time.Time
	// turn is the plugin's start turn (startgate.go), given back when it
	// first reports ready or this run ends.
	turn *startTurn
	// group marks the launch of a group process (group.go): sp is the
	// group's, which has no status of its own.
	group bool
	// member marks one member's run inside a group process: pc addresses
	// the member, and the group's loop, not the member's, pings the
	// process.
	member bool
}

// runOnce starts the plugin, configures it and watches it until it fails or
// ctx ends (then it stops the plugin gracefully). It returns when the
// process is gone, with when the plugin first reported ready (zero if never).
func (s *Supervisor) runOnce(ctx context.Context, sp Spec, term uint64) (readyAt time.Time, err error) {
	turn, err := s.gate.acquire(ctx)
	if err != nil {
		return time.Time{}, err
	}
	defer turn.release()
	l, err := s.launch(sp)
	if err != nil {
		return time.Time{}, err
	}
	l.turn = turn
	defer func() {
		s.cleanup(l)
		var ref *refusal
		if err != nil && !errors.As(err, &ref) && l.cmd.ProcessState != nil {
			err = fmt.Errorf("%w (process %s)", err, l.cmd.ProcessState)
		}
	}()
	if err := s.connect(ctx, l, term); err != nil {
		return time.Time{}, err
	}
	s.setClient(sp.Name, l.pc)
	defer s.setClient(sp.Name, nil)
	return s.watch(ctx, l)
}

// launch builds the go-plugin client for sp; the process starts in connect.
func (s *Supervisor) launch(sp Spec) (*launch, error) { return s.launchTagged(sp, "plugin") }

// launchTagged is launch with the process's log lines tagged key=sp.Name
// (a group's are tagged group=NAME, and its members' lines add their own
// plugin=NAME).
func (s *Supervisor) launchTagged(sp Spec, key string) (*launch, error) {
	sum, err := sp.checksum()
	if err != nil {
		return nil, &refusal{msg: err.Error()}
	}
	log := s.cfg.Logger.With(key, sp.Name)
	cmd := exec.Command(sp.Path, sp.Args...)
	cmd.Env = append([]string{}, sp.Env...) // SkipHostEnv: the host's environment holds its secrets
	if !s.noParentDeathSignal {
		setParentDeathSignal(cmd)
	}
	l := &launch{sp: sp, cmd: cmd, log: log, stderr: lineLogger(log, "stderr")}
	if !sp.Builtin {
		l.runAs = s.cfg.RunAs
	}
	cc := &plugin.ClientConfig{
		HandshakeConfig:  proto.Handshake,
		VersionedPlugins: proto.HostPluginSets(),
		AutoMTLS:         true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		SkipHostEnv:      true,
		// go-plugin adds the time a plugin's JSON log line carries as
		// "timestamp" (zero: the SDK leaves stamping to the host, whose
		// slog records have their own time).
		Logger:       hclogbridge.New(log, "", "timestamp"),
		StartTimeout: s.cfg.StartTimeout,
		SyncStderr:   l.stderr,
	}
	cc.UnixSocketConfig = &plugin.UnixSocketConfig{TempDir: s.cfg.SocketDir}
	if l.runAs != nil {
		// go-plugin's socket directory is the host's; the plugin's group
		// may create its socket there.
		cc.UnixSocketConfig.Group = strconv.FormatUint(uint64(l.runAs.GID), 10)
	}
	cc.RunnerFunc = l.runnerFunc(sum, sha256.New)
	l.client = plugin.NewClient(cc)
	return l, nil
}

// connect starts the process, checks who it is and configures it.
func (s *Supervisor) connect(ctx context.Context, l *launch, term uint64) error {
	pc, err := s.dial(l, []string{l.sp.Name})
	if err != nil {
		return err
	}
	l.pc = pc
	return s.configure(ctx, l, term)
}

// dial starts l's process and dispenses its plugin client; the process's
// PID goes into the status of each of plugins.
func (s *Supervisor) dial(l *launch, plugins []string) (*proto.Client, error) {
	sp := l.sp
	rpc, err := l.client.Client()
	if err != nil {
		return nil, s.startError(sp, err)
	}
	l.rpc = rpc
	if l.cmd.Process != nil {
		for _, name := range plugins {
			s.update(name, func(st *PluginStatus) { st.PID = l.cmd.Process.Pid })
		}
	}
	raw, err := rpc.Dispense(proto.PluginName)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispensing the plugin: %w", sp.Name, err)
	}
	pc, ok := raw.(*proto.Client)
	if !ok {
		return nil, fmt.Errorf("plugin %s: dispensed %T, not a plugin client", sp.Name, raw)
	}
	return pc, nil
}

// configure checks who l.pc is, grants its rules and hands it its
// identity, term and config. l.sp names a plugin with a status, or, with
// l.group set, a group process (which has none).
func (s *Supervisor) configure(ctx context.Context, l *launch, term uint64) error {
	sp, pc := l.sp, l.pc
	callCtx, cancel := context.WithTimeout(ctx, s.cfg.StartTimeout)
	defer cancel()
	desc, err := pc.Describe(callCtx)
	if err != nil {
		return fmt.Errorf("plugin %s: Describe: %w", sp.Name, err)
	}
	if err := desc.Kind.Validate(); err != nil {
		return refusef("plugin %s: refused %s: %v", sp.Name, sp.Path, err)
	}
	if v := l.client.NegotiatedVersion(); !slices.Contains(desc.ProtocolVersions, v) {
		return refusef("plugin %s: refused %s: it negotiated protocol version %d but describes itself as speaking %v",
			sp.Name, sp.Path, v, desc.ProtocolVersions)
	}
	if !l.group {
		s.update(sp.Name, func(st *PluginStatus) { st.Kind, st.Version = desc.Kind, desc.Version })
	}
	if s.cfg.Authorize != nil {
		if err := s.cfg.Authorize(callCtx, sp, desc); err != nil {
			return fmt.Errorf("plugin %s: granting its API permissions: %w", sp.Name, err)
		}
	}
	creds, renewAt, err := s.cfg.Credentials(callCtx, sp.Name, term)
	if err != nil {
		return fmt.Errorf("plugin %s: issuing API credentials for term %d: %w", sp.Name, term, err)
	}
	l.renewAt = renewAt
	conf := proto.Configuration{
		APIEndpoint: s.cfg.APIEndpoint,
		CAPEM:       s.cfg.CAPEM,
		Credentials: creds,
		Term:        term,
		Config:      sp.Config,
		Node:        s.cfg.NodeName,
	}
	if s.cfg.Members != nil && pc.Broker() != nil {
		conf.MembersBroker = proto.ServeMembers(pc.Broker(), s.cfg.Members)
	}
	err = pc.Configure(callCtx, conf)
	if err != nil {
		return fmt.Errorf("plugin %s: Configure: %s", sp.Name, status.Convert(err).Message())
	}
	return nil
}

// startError explains why go-plugin could not start the process.
func (s *Supervisor) startError(sp Spec, err error) error {
	switch {
	case errors.Is(err, plugin.ErrChecksumsDoNotMatch):
		got, herr := fileSHA256(sp.Path)
		if herr != nil {
			got = "unreadable: " + herr.Error()
		}
		if sp.Builtin {
			return refusef("plugin %s: refused %s: its sha256 is %s but this keelson embedded %s; "+
				"the extracted built-in plugins executable was modified: restart keelson to extract it again", sp.Name, sp.Path, got, sp.SHA256)
		}
		return refusef("plugin %s: refused %s: its sha256 is %s but the configuration expects %s; "+
			"reinstall the plugin or update its checksum", sp.Name, sp.Path, got, strings.ToLower(sp.SHA256))
	case strings.Contains(err.Error(), "incompatible API version"):
		return refusef("plugin %s: refused %s: it does not speak plugin protocol version %d, the only version this keelson speaks (%v); "+
			"install a build of the plugin for this keelson release", sp.Name, sp.Path, proto.ProtocolVersion, err)
	}
	return fmt.Errorf("plugin %s: starting %s: %w", sp.Name, sp.Path, err)
}
