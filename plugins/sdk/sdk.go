// Package sdk is what a Keelson plugin author imports: one call serves a
// plugin to the host over go-plugin, hands it a ready rest.Config for the
// API server, reports its health on the host's Run stream and makes the
// process exit when the host dies.
//
// Cloud providers (ServeCloudProvider, cloud.go) reuse k8s.io/cloud-provider's
// controller packages (controllers/node, nodelifecycle, service, route)
// rather than Keelson's own loop: those controllers are the contract every
// out-of-tree cloudprovider.Interface implementation is written and tested
// against (call order, which nodes a load balancer is given, when a Node is
// deleted, the cleanup finalizer, retries), so a ported provider behaves as
// under upstream's cloud-controller-manager only if the same code drives it.
// The SDK's own part is the process around them: identity and least-privilege
// rules, one trimmed informer cache, readiness over the plugin protocol, klog
// into the plugin's log, and no leader election (the host runs one instance).
package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/plugins/proto"
)

// Kind says what a plugin does; see proto.Kind.
type Kind = proto.Kind

// The plugin kinds, re-exported so authors need not import proto.
const (
	KindController    = proto.KindController
	KindScheduler     = proto.KindScheduler
	KindCloudProvider = proto.KindCloudProvider
	KindIngress       = proto.KindIngress
)

// Plugin describes a plugin and its work.
type Plugin struct {
	Name    string
	Kind    Kind
	Version string
	// Run does the plugin's work until ctx is cancelled (the host asked it to
	// stop, or lost leadership) and returns nil; an error means the plugin
	// failed, and the host restarts it with backoff.
	Run func(ctx context.Context, env Env) error
	// RunNode, when set, is the plugin's node part: what every node agent
	// selected by the plugin's declaration (scope node) runs, with the
	// node's own identity and Env.Node set. A product ships its leader part
	// (Run) and node part in one binary this way; either may be nil.
	RunNode func(ctx context.Context, env Env) error
	// ManualReady makes the plugin call Env.Ready itself (e.g. after its
	// caches synced). Otherwise it is reported ready as soon as Run starts.
	ManualReady bool
	// Rules are the API permissions the plugin needs; the host grants
	// exactly these to the plugin's identity (least privilege), so a
	// request outside them is refused with 403 Forbidden.
	Rules []rbacv1.PolicyRule
}

func (p Plugin) validate() error {
	if p.Name == "" {
		return fmt.Errorf("sdk: Plugin.Name is empty")
	}
	if err := p.Kind.Validate(); err != nil {
		return fmt.Errorf("sdk: plugin %q: %w", p.Name, err)
	}
	if p.Run == nil && p.RunNode == nil {
		return fmt.Errorf("sdk: plugin %q has neither a Run nor a RunNode func", p.Name)
	}
	return nil
}

// Env is what Run gets from the host.
type Env struct {
	// RESTConfig reaches the API server with this plugin's own identity,
	// speaking protobuf where the API has it.
	RESTConfig *rest.Config
	// Term is the raft term of the leader that started the plugin; the API
	// server rejects writes made under an older term.
	Term uint64
	// Config is the plugin's section of the server configuration (raw JSON;
	// may be empty).
	Config json.RawMessage
	// Logger writes to the host's log, tagged with the plugin's name.
	Logger *slog.Logger
	// Node is the node a node plugin runs on (RunNode); empty for the
	// leader's plugins.
	Node string

	report  func(proto.Status)
	members func() (*proto.MembersClient, error)
	// shared, in a group process, is the group's informer factory, and
	// member the plugin's name in it.
	shared *sharedInformers
	member string
}

// Member is one member of the cluster's gossip pool; see proto.Member.
type Member = proto.Member

// The gossip member states, re-exported from proto.
const (
	MemberAlive   = proto.MemberAlive
	MemberLeaving = proto.MemberLeaving
	MemberLeft    = proto.MemberLeft
	MemberFailed  = proto.MemberFailed
)

// WatchMembers calls fn with the node's view of the gossip pool, then after
// every change, until ctx ends (nil) or the host's stream breaks. Only node
// plugins get the view: the leader's plugins get an error.
func (e Env) WatchMembers(ctx context.Context, fn func([]Member)) error {
	if e.members == nil {
		return fmt.Errorf("sdk: the host offers no gossip member view (only node plugins get one)")
	}
	c, err := e.members()
	if err != nil {
		return err
	}
	defer c.Close()
	err = c.Watch(ctx, func(l proto.MemberList) { fn(l.Members) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Ready reports the plugin healthy on the host's Run stream.
func (e Env) Ready(message string) { e.report(proto.Status{Ready: true, Message: message}) }

// NotReady reports the plugin unhealthy, with why.
func (e Env) NotReady(message string, err error) {
	st := proto.Status{Message: message}
	if err != nil {
		st.Error = err.Error()
	}
	e.report(st)
}

// Serve serves p to the host and returns when the host shut the plugin down.
// It never returns early on bad input: a misconfigured plugin exits with a
// message on stderr, which the host logs.
func Serve(p Plugin) {
	stderr := os.Stderr // go-plugin swaps os.Stderr for its stdio stream
	if err := p.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		os.Exit(1)
	}
	logger := NewLogger(stderr)
	srv := newServer(p, logger)
	wd := &watchdog{
		ppid:     os.Getppid(),
		getppid:  os.Getppid,
		interval: time.Second,
		logger:   logger,
		exit:     func() { os.Exit(1) },
	}
	srv.hostLost = wd.hostLost
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go wd.run(ctx)
	serve(p.Name, stderr, proto.PluginSets(srv))
}

// ServeVersions is Serve for a plugin that speaks only the given protocol
// versions; it exists to test the host's version negotiation.
func ServeVersions(p Plugin, versions ...int) {
	stderr := os.Stderr
	if err := p.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		os.Exit(1)
	}
	srv := newServer(p, NewLogger(stderr))
	srv.versions = versions
	serve(p.Name, stderr, proto.PluginSets(srv, versions...))
}

func serve(name string, stderr io.Writer, sets map[int]plugin.PluginSet) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  proto.Handshake,
		VersionedPlugins: sets,
		GRPCServer:       plugin.DefaultGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: name, Output: stderr, JSONFormat: true, Level: hclog.Info,
		}),
	})
}
