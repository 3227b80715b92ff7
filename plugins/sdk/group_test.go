package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/plugins/proto"
)

// serveGroupTest serves a group of members over loopback gRPC and returns
// the host's client for the process.
func serveGroupTest(t *testing.T, members ...Plugin) *proto.Client {
	t.Helper()
	g, err := newGroupServer("small", members, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g.hostLost = func(reason string) { t.Errorf("the group decided its host is gone: %s", reason) }
	return serveOverGRPC(t, g)
}

// runs records what each member's runs were given.
type runs struct {
	mu   sync.Mutex
	seen map[string][]string // member -> "term/token/config" per run
	fail map[string]int      // member -> runs left that fail at once
}

func (r *runs) plugin(name string, rules ...rbacv1.PolicyRule) Plugin {
	return Plugin{Name: name, Kind: KindController, Version: "1.0", Rules: rules, Run: func(ctx context.Context, env Env) error {
		r.mu.Lock()
		r.seen[name] = append(r.seen[name], strings.Join([]string{
			strings.TrimPrefix(env.RESTConfig.BearerToken, "tok-"), string(env.Config)}, " "))
		fail := r.fail[name] > 0
		r.fail[name]--
		r.mu.Unlock()
		if fail {
			return errors.New(name + " failed on purpose")
		}
		<-ctx.Done()
		return nil
	}}
}

func (r *runs) of(name string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen[name]...)
}

func memberConfig(token, section string) proto.Configuration {
	c := validConfig
	c.CAPEM = nil // the group's client is built at Configure: no made-up CA
	c.Credentials = proto.Credentials{BearerToken: token}
	c.Config = []byte(section)
	return c
}

// runMember runs c's member and returns its stream's end.
func runMember(t *testing.T, c *proto.Client) (cancel func(), ended chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ended = make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	return cancel, ended
}

func TestGroupMembersAreConfiguredAndRunApart(t *testing.T) {
	r := &runs{seen: map[string][]string{}, fail: map[string]int{"crashy": 1}}
	write := rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list", "watch", "create"}}
	onlyWrite := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}}
	host := serveGroupTest(t, r.plugin("steady", write, onlyWrite), r.plugin("crashy"))
	ctx := context.Background()

	desc, err := host.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Name != "small" || len(desc.Rules) != 1 || strings.Join(desc.Rules[0].Verbs, ",") != "list,watch" {
		t.Errorf("the group describes itself as %+v, want its members' read rules only", desc)
	}
	if d, err := host.Member("steady").Describe(ctx); err != nil || d.Name != "steady" || len(d.Rules) != 2 {
		t.Errorf("member steady describes itself as %+v (%v)", d, err)
	}
	if _, err := host.Member("ghost").Describe(ctx); err == nil || !strings.Contains(err.Error(), `no member "ghost"`) {
		t.Errorf("an unknown member answered: %v", err)
	}
	if err := host.Configure(ctx, memberConfig("tok-group", "")); err != nil {
		t.Fatal(err)
	}

	steady, crashy := host.Member("steady"), host.Member("crashy")
	if err := steady.Configure(ctx, memberConfig("tok-steady", `{"w":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := crashy.Configure(ctx, memberConfig("tok-crashy", `{"w":2}`)); err != nil {
		t.Fatal(err)
	}
	stopSteady, steadyEnded := runMember(t, steady)
	defer stopSteady()
	_, crashEnded := runMember(t, crashy)
	if err := <-crashEnded; err == nil || !strings.Contains(err.Error(), "crashy failed on purpose") {
		t.Fatalf("crashy's run ended with %v", err)
	}
	// The host restarts the failed member alone, with a new identity.
	if err := crashy.Configure(ctx, memberConfig("tok-crashy2", `{"w":3}`)); err != nil {
		t.Fatalf("reconfiguring the failed member: %v", err)
	}
	stopCrashy, _ := runMember(t, crashy)
	defer stopCrashy()
	waitRuns(t, r, "crashy", 2)
	if err := steady.Configure(ctx, memberConfig("tok-x", "")); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("a running member was reconfigured: %v", err)
	}
	select {
	case err := <-steadyEnded:
		t.Fatalf("steady's run ended beside its neighbour's failure: %v", err)
	default:
	}
	if got := r.of("steady"); len(got) != 1 || got[0] != `steady {"w":1}` {
		t.Errorf("steady's runs %q", got)
	}
	if got := r.of("crashy"); len(got) != 2 || got[0] != `crashy {"w":2}` || got[1] != `crashy2 {"w":3}` {
		t.Errorf("crashy's runs %q, want its own identity and config each time", got)
	}
	for _, m := range []*proto.Client{steady, crashy} {
		if err := m.Stop(ctx, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-steadyEnded; !errors.Is(err, io.EOF) {
		t.Errorf("steady's stream after Stop: %v, want a clean end", err)
	}
}

func waitRuns(t *testing.T, r *runs, name string, n int) {
	t.Helper()
	for end := time.Now().Add(time.Minute); len(r.of(name)) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("%s ran %d times, want %d", name, len(r.of(name)), n)
		}
	}
}

func TestReadRulesKeepReadVerbsOnly(t *testing.T) {
	got := ReadRules([]rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"*"}},
		{NonResourceURLs: []string{"/healthz"}, Verbs: []string{"get"}},
	})
	if len(got) != 2 || strings.Join(got[0].Verbs, ",") != "get,list,watch" || strings.Join(got[1].Verbs, ",") != "get,list,watch" ||
		got[1].Resources[0] != "deployments" {
		t.Errorf("read rules %+v", got)
	}
}
