package host

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/keelson/keelson/plugins/proto"
)

// CredentialsFunc issues a plugin's API identity (client certificate or
// token) for a raft term; the API server's admission rejects writes carrying
// an older term, which fences a deposed leader's plugins. renewAt is when the
// plugin must be restarted with fresh credentials (zero: never).
type CredentialsFunc func(ctx context.Context, plugin string, term uint64) (creds proto.Credentials, renewAt time.Time, err error)

// AuthorizeFunc grants a plugin the API permissions it needs, after it
// described itself and before it gets its credentials.
type AuthorizeFunc func(ctx context.Context, spec Spec, desc proto.Description) error

// Config tunes a Supervisor. Zero durations take DefaultConfig's values.
type Config struct {
	// APIEndpoint is the URL plugins use to reach the API server.
	APIEndpoint string
	// CAPEM is the CA bundle plugins trust for the API server.
	CAPEM []byte
	// Credentials is called before every (re)start of a plugin. Required.
	Credentials CredentialsFunc
	// Authorize, when set, is called before Credentials on every (re)start.
	// An error fails this start (the plugin is retried with backoff).
	Authorize AuthorizeFunc
	// OnChange, when set, receives a copy of a plugin's status after every
	// change. It is called without the supervisor's lock held, from the
	// plugin's goroutine: it must not block for long.
	OnChange func(PluginStatus)
	// Logger receives the supervisor's events and every plugin's log lines,
	// tagged plugin=<name>.
	Logger *slog.Logger
	// Clock drives pings, backoff and timeouts.
	Clock clockwork.Clock

	// NodeName, when set, makes this a node's host: every plugin is told it
	// runs as a node plugin on this node (proto.Configuration.Node).
	NodeName string
	// Members, when set, is served to every plugin over go-plugin's broker
	// (node hosts: the node's view of the gossip pool).
	Members proto.MembersServer
	// StoppedMessage is a stopped plugin's status message; default "stopped:
	// this server is not the leader".
	StoppedMessage string

	// RunAs, when set, is the unprivileged identity third-party plugins run
	// as (built-ins run as the host).
	RunAs *RunAs
	// SocketDir, when set, is where each plugin's go-plugin socket
	// directory is made (PrepareSocketDir); empty: the system temp dir.
	SocketDir string

	// PingInterval is how often a running plugin is health-checked.
	PingInterval time.Duration
	// PingTimeout is how long a ping may take before the plugin is treated
	// as hung and killed.
	PingTimeout time.Duration
	// StartTimeout bounds the go-plugin handshake and Describe/Configure.
	StartTimeout time.Duration
	// StopGrace is how long a plugin gets to stop before it is killed.
	StopGrace time.Duration
	// InitialBackoff is the wait before the first restart of a failed
	// plugin; it doubles on every further failure up to MaxBackoff.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// BackoffReset is how long a plugin must have been ready for its next
	// failure to start again from InitialBackoff.
	BackoffReset time.Duration
	// StartConcurrency is how many plugins may be starting at once: a
	// plugin takes a turn before its process is launched and gives it back
	// when it first reports ready, when that run ends, or after StartHold,
	// whichever comes first (so one that never gets ready holds up the
	// others for StartHold only). Zero takes DefaultConfig's.
	StartConcurrency int
	// StartHold is the longest a starting plugin keeps its turn.
	StartHold time.Duration

	// Groups are the plugins served together by one process each (the
	// opt-in shared mode, group.go); every other plugin has a process of
	// its own. Empty by default.
	Groups []Group
}

// DefaultConfig returns the production tuning (without endpoint, CA and
// credentials, which only the server knows).
func DefaultConfig() Config {
	return Config{
		Logger:           slog.Default(),
		Clock:            clockwork.NewRealClock(),
		PingInterval:     5 * time.Second,
		PingTimeout:      5 * time.Second,
		StartTimeout:     30 * time.Second,
		StopGrace:        10 * time.Second,
		InitialBackoff:   time.Second,
		MaxBackoff:       time.Minute,
		BackoffReset:     5 * time.Minute,
		StartConcurrency: 4,
		StartHold:        10 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.Clock == nil {
		c.Clock = d.Clock
	}
	if c.StartConcurrency == 0 {
		c.StartConcurrency = d.StartConcurrency
	}
	if c.StoppedMessage == "" {
		c.StoppedMessage = "stopped: this server is not the leader"
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&c.PingInterval, &d.PingInterval}, {&c.PingTimeout, &d.PingTimeout},
		{&c.StartTimeout, &d.StartTimeout}, {&c.StopGrace, &d.StopGrace},
		{&c.InitialBackoff, &d.InitialBackoff}, {&c.MaxBackoff, &d.MaxBackoff},
		{&c.BackoffReset, &d.BackoffReset}, {&c.StartHold, &d.StartHold},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	return c
}

// Validate reports the first unusable field.
func (c Config) Validate() error {
	switch {
	case c.APIEndpoint == "":
		return fmt.Errorf("plugin host: APIEndpoint is empty")
	case c.Credentials == nil:
		return fmt.Errorf("plugin host: Credentials is nil; every plugin needs its own API identity")
	case c.PingInterval < 0 || c.PingTimeout < 0 || c.StartTimeout < 0 || c.StopGrace < 0:
		return fmt.Errorf("plugin host: negative ping, start or stop timeout")
	case c.StartConcurrency < 0 || c.StartHold < 0:
		return fmt.Errorf("plugin host: StartConcurrency (%d) and StartHold (%s) must not be negative", c.StartConcurrency, c.StartHold)
	case c.InitialBackoff < 0 || c.MaxBackoff < c.InitialBackoff:
		return fmt.Errorf("plugin host: backoff must satisfy 0 <= InitialBackoff (%s) <= MaxBackoff (%s)", c.InitialBackoff, c.MaxBackoff)
	}
	return nil
}
