package host

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/plugins/proto"
)

// testGroup is group name serving members from one testplugin process.
func testGroup(name string, members ...string) Group {
	return Group{Name: name, Members: members, Process: BuiltinGroupSpec(BuiltinBinary{Path: testPlugin}, name, members)}
}

// issued records the identities the host issued credentials to, by term.
type issued struct {
	mu    sync.Mutex
	names map[string][]uint64
}

func (i *issued) config(cfg Config) Config {
	i.names = map[string][]uint64{}
	cfg.Credentials = func(_ context.Context, plugin string, term uint64) (proto.Credentials, time.Time, error) {
		i.mu.Lock()
		i.names[plugin] = append(i.names[plugin], term)
		i.mu.Unlock()
		return proto.Credentials{BearerToken: fmt.Sprintf("token-%s-%d", plugin, term)}, time.Time{}, nil
	}
	return cfg
}

func (i *issued) terms(name string) []uint64 {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.names[name])
}

func runningWithOwnMessage(st PluginStatus) bool {
	return st.State == StateRunning && st.Ready && strings.HasPrefix(st.Message, "term=")
}

func TestGroupMembersRunInOneProcessEachWithItsOwnIdentity(t *testing.T) {
	var ids issued
	cfg := ids.config(testConfig(&syncBuffer{}))
	cfg.Groups = []Group{testGroup("small", "alpha", "beta")}
	var described []string
	var mu sync.Mutex
	cfg.Authorize = func(_ context.Context, sp Spec, desc proto.Description) error {
		mu.Lock()
		defer mu.Unlock()
		described = append(described, sp.Name+"="+desc.Name)
		return nil
	}
	s := startSupervisor(t, cfg, spec("alpha", "healthy"), spec("beta", "healthy"), spec("solo", "healthy"))

	a := waitFor(t, s, "alpha", runningWithOwnMessage)
	b := waitFor(t, s, "beta", runningWithOwnMessage)
	solo := waitFor(t, s, "solo", runningWithOwnMessage)
	if a.PID == 0 || a.PID != b.PID {
		t.Errorf("members run as PIDs %d and %d, want one process", a.PID, b.PID)
	}
	if solo.PID == a.PID {
		t.Errorf("the plugin outside the group runs in the group's process %d", a.PID)
	}
	for _, st := range []PluginStatus{a, b} {
		if st.Message != "term=7 host=https://127.0.0.1:6443" || st.Kind != proto.KindController || st.Term != 7 {
			t.Errorf("%s: status %+v does not show its own configured run", st.Name, st)
		}
	}
	for _, name := range []string{"alpha", "beta", "small", "solo"} {
		if got := ids.terms(name); !slices.Equal(got, []uint64{7}) {
			t.Errorf("credentials issued to %s for terms %v, want once for term 7", name, got)
		}
	}
	mu.Lock()
	slices.Sort(described)
	got := strings.Join(described, ",")
	mu.Unlock()
	if got != "alpha=alpha,beta=beta,small=small,solo=testplugin" {
		t.Errorf("authorized %s, want each member and the group under its own name", got)
	}
	s.Stop()
	if !processGone(a.PID) {
		t.Errorf("group process %d still runs after Stop", a.PID)
	}
}

func TestFailingMemberRestartsAloneInsideItsProcess(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.Groups = []Group{testGroup("small", "crashy", "steady")}
	s := startSupervisor(t, cfg, spec("crashy", "crash"), spec("steady", "healthy"))

	steady := waitFor(t, s, "steady", runningWithOwnMessage)
	crashy := waitFor(t, s, "crashy", func(st PluginStatus) bool { return st.Restarts >= 2 && runningWithOwnMessage(st) })
	if !strings.Contains(crashy.LastError, "testplugin crashed on purpose") {
		t.Errorf("crashy's last error %q does not carry its own failure", crashy.LastError)
	}
	if crashy.PID != steady.PID {
		t.Errorf("crashy restarted as PID %d outside its group's process %d", crashy.PID, steady.PID)
	}
	after := waitFor(t, s, "steady", func(PluginStatus) bool { return true })
	if after.Restarts != 0 || after.PID != steady.PID || after.State != StateRunning || after.Since != steady.Since {
		t.Errorf("steady was disturbed by its neighbour's restarts: before %+v, after %+v", steady, after)
	}
}

func TestKilledGroupProcessRestartsEveryMember(t *testing.T) {
	cfg := testConfig(&syncBuffer{})
	cfg.Groups = []Group{testGroup("small", "alpha", "beta")}
	s := startSupervisor(t, cfg, spec("alpha", "healthy"), spec("beta", "healthy"))
	first := waitFor(t, s, "alpha", runningWithOwnMessage).PID
	waitFor(t, s, "beta", runningWithOwnMessage)
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "beta"} {
		st := waitFor(t, s, name, func(st PluginStatus) bool {
			return st.Restarts >= 1 && st.PID != first && runningWithOwnMessage(st)
		})
		if !strings.Contains(st.LastError, "group small process") {
			t.Errorf("%s: last error %q does not say its group's process failed", name, st.LastError)
		}
		if st.Restarts != 1 {
			t.Errorf("%s: %d restarts counted for one death of its group's process, want 1", name, st.Restarts)
		}
	}
}

func TestGroupOnANewTermRunsWithTheNewTermsIdentities(t *testing.T) {
	var ids issued
	cfg := ids.config(testConfig(&syncBuffer{}))
	cfg.Groups = []Group{testGroup("small", "alpha", "beta")}
	s, err := New(cfg, []Spec{spec("alpha", "healthy"), spec("beta", "healthy")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	if err := s.Start(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	old := waitFor(t, s, "alpha", runningWithOwnMessage).PID
	s.Stop()
	if err := s.Start(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "beta"} {
		st := waitFor(t, s, name, runningWithOwnMessage)
		if st.Term != 8 || !strings.HasPrefix(st.Message, "term=8 ") || st.PID == old {
			t.Errorf("%s after the new term: %+v, want term 8 in a new process (old %d)", name, st, old)
		}
		if got := ids.terms(name); !slices.Equal(got, []uint64{7, 8}) {
			t.Errorf("%s got credentials for terms %v, want 7 then 8", name, got)
		}
	}
	if !processGone(old) {
		t.Errorf("the old term's group process %d still runs", old)
	}
	if got := ids.terms("small"); !slices.Equal(got, []uint64{7, 8}) {
		t.Errorf("the group's read identity got credentials for terms %v, want 7 then 8", got)
	}
}

func TestNewRejectsBadGroups(t *testing.T) {
	third := Spec{Name: "ext", Path: testPlugin, SHA256: strings.Repeat("a", 64)}
	specs := []Spec{spec("alpha", "healthy"), spec("beta", "healthy"), third}
	for _, tc := range []struct {
		groups []Group
		want   string
	}{
		{[]Group{testGroup("small", "gamma")}, "member gamma is not a configured plugin"},
		{[]Group{testGroup("small", "ext")}, "member ext is not a built-in plugin"},
		{[]Group{testGroup("a", "alpha"), testGroup("b", "alpha")}, "member alpha is already in group a"},
		{[]Group{testGroup("alpha", "beta")}, `plugin group "alpha": a group needs a name that no plugin has`},
		{[]Group{testGroup("small")}, "plugin group small has no members"},
	} {
		cfg := testConfig(&syncBuffer{})
		cfg.Groups = tc.groups
		_, err := New(cfg, specs)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("groups %+v: error %v, want %q", tc.groups, err, tc.want)
		}
	}
}
