package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/plugins/proto"
)

// GroupVersion is what a group process describes itself as.
const GroupVersion = "0.1.0"

// ServeGroup serves several plugins from one process (the opt-in shared
// mode of built-in controllers): the host addresses each member by name
// (proto.MemberHeader) and gives each its own configuration, identity,
// term and Run, exactly as if it were a process of its own; calls without
// a member name are the group's own. The group is configured first, with
// the group's read identity, from which the one informer factory the
// members built on InformerSetup share is built. Returns when the host
// shuts the process down.
func ServeGroup(name string, members []Plugin) {
	stderr := os.Stderr
	logger := NewLogger(stderr)
	g, err := newGroupServer(name, members, logger)
	if err != nil {
		fmt.Fprintln(stderr, err)
		os.Exit(1)
	}
	wd := &watchdog{ppid: os.Getppid(), getppid: os.Getppid, interval: time.Second, logger: logger, exit: func() { os.Exit(1) }}
	g.hostLost = wd.hostLost
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go wd.run(ctx)
	serve(name, stderr, proto.PluginSets(g))
}

// groupServer implements proto.Server for a group process, routing each
// call to its member.
type groupServer struct {
	name     string
	logger   *slog.Logger
	members  map[string]Plugin
	hostLost func(reason string)

	mu      sync.Mutex
	broker  *plugin.GRPCBroker
	current map[string]*server // each member's server for its latest run
	shared  *sharedInformers   // nil until the group is configured
}

func newGroupServer(name string, members []Plugin, logger *slog.Logger) (*groupServer, error) {
	if name == "" {
		return nil, fmt.Errorf("sdk: a plugin group needs a name")
	}
	if len(members) == 0 {
		return nil, fmt.Errorf("sdk: plugin group %s has no members", name)
	}
	g := &groupServer{name: name, logger: logger, members: map[string]Plugin{}, current: map[string]*server{}}
	for _, p := range members {
		if err := p.validate(); err != nil {
			return nil, err
		}
		if p.Run == nil {
			return nil, fmt.Errorf("sdk: plugin group %s: member %s has no leader part (Run)", name, p.Name)
		}
		if _, dup := g.members[p.Name]; dup || p.Name == name {
			return nil, fmt.Errorf("sdk: plugin group %s: member %s is listed twice or named like the group", name, p.Name)
		}
		g.members[p.Name] = p
	}
	return g, nil
}

// UseBroker keeps the connection's broker for the members' runs.
func (g *groupServer) UseBroker(b *plugin.GRPCBroker) {
	g.mu.Lock()
	g.broker = b
	g.mu.Unlock()
}

// member returns the server of the member a call names; fresh makes a new
// one for a new run (Configure), refusing while the previous run is live.
func (g *groupServer) member(ctx context.Context, fresh bool) (*server, error) {
	name := proto.MemberFromContext(ctx)
	p, ok := g.members[name]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "plugin group %s has no member %q", g.name, name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	cur := g.current[name]
	if !fresh && cur != nil {
		return cur, nil
	}
	if cur != nil && cur.isRunning() {
		return nil, status.Errorf(codes.FailedPrecondition, "plugin %s: already running; stop it to reconfigure", name)
	}
	srv := newServer(p, g.logger.With("plugin", name))
	srv.hostLost, srv.shared, srv.broker = g.hostLost, g.shared, g.broker
	g.current[name] = srv
	return srv, nil
}

func (g *groupServer) Describe(ctx context.Context) (proto.Description, error) {
	if proto.MemberFromContext(ctx) == "" {
		return proto.Description{Name: g.name, Kind: KindController, Version: GroupVersion,
			ProtocolVersions: []int{proto.ProtocolVersion}, Rules: g.readRules()}, nil
	}
	srv, err := g.member(ctx, false)
	if err != nil {
		return proto.Description{}, err
	}
	return srv.Describe(ctx)
}

// readRules are the group identity's permissions: the read verbs of every
// member's rules, which is what the shared informers list and watch.
func (g *groupServer) readRules() []rbacv1.PolicyRule {
	names := make([]string, 0, len(g.members))
	for n := range g.members {
		names = append(names, n)
	}
	slices.Sort(names)
	var rules []rbacv1.PolicyRule
	for _, n := range names {
		rules = append(rules, ReadRules(g.members[n].Rules)...)
	}
	return rules
}

// ReadRules keeps the get, list and watch verbs of rules (resource rules
// only), dropping the rules left with none.
func ReadRules(rules []rbacv1.PolicyRule) []rbacv1.PolicyRule {
	var out []rbacv1.PolicyRule
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			continue
		}
		var verbs []string
		for _, v := range r.Verbs {
			if v == "get" || v == "list" || v == "watch" || v == rbacv1.VerbAll {
				verbs = append(verbs, v)
			}
		}
		if slices.Contains(verbs, rbacv1.VerbAll) {
			verbs = []string{"get", "list", "watch"}
		}
		if len(verbs) > 0 {
			r = *r.DeepCopy()
			r.Verbs = verbs
			out = append(out, r)
		}
	}
	return out
}

func (g *groupServer) Configure(ctx context.Context, c proto.Configuration) error {
	if proto.MemberFromContext(ctx) != "" {
		srv, err := g.member(ctx, true)
		if err != nil {
			return err
		}
		return srv.Configure(ctx, c)
	}
	if err := c.Validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "plugin group %s: %v", g.name, err)
	}
	client, err := kubernetes.NewForConfig(restConfig(c, g.name, GroupVersion))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "plugin group %s: building its API client: %v", g.name, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shared != nil {
		// The informers started with this identity; a new term or identity
		// means a new process.
		return status.Errorf(codes.FailedPrecondition, "plugin group %s: already configured; restart the process to reconfigure", g.name)
	}
	g.shared = newSharedInformers(client)
	return nil
}

func (g *groupServer) Run(ctx context.Context, send func(proto.Status) error) error {
	if proto.MemberFromContext(ctx) == "" {
		return status.Errorf(codes.FailedPrecondition, "plugin group %s: the group itself does not run; run its members", g.name)
	}
	srv, err := g.member(ctx, false)
	if err != nil {
		return err
	}
	return srv.Run(ctx, send)
}

func (g *groupServer) Stop(ctx context.Context, grace time.Duration) error {
	if proto.MemberFromContext(ctx) == "" {
		return nil // the process ends when the host kills it
	}
	srv, err := g.member(ctx, false)
	if err != nil {
		return err
	}
	return srv.Stop(ctx, grace)
}

// Metrics are the process's, once for all members.
func (g *groupServer) Metrics(context.Context) ([]byte, error) { return gatherMetrics(g.name) }

// isRunning reports whether a run's work is still going: Run may return
// (the host closed a stopped member's stream) before it clears running.
func (s *server) isRunning() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}
