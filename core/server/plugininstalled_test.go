package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/core/plugininstall"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
)

// statusLog records what the installed plugins publish.
type statusLog struct {
	mu    sync.Mutex
	last  map[string]host.PluginStatus
	specs map[string]host.Spec
}

func (l *statusLog) set(st host.PluginStatus) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last[st.Name] = st
}

func (l *statusLog) setSpec(sp host.Spec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.specs[sp.Name] = sp
}

func (l *statusLog) get(name string) host.PluginStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[name]
}

// installedFixture is an installedPlugins whose records, peers and
// supervisors are the test's.
type installedFixture struct {
	p        *installedPlugins
	status   *statusLog
	records  []plugininstall.Record
	peerBlob []byte // what "the other servers" hold; nil: nothing
	started  []host.Spec
	approved [][]rbacv1.PolicyRule
	pruned   int
}

func newInstalledFixture(t *testing.T) *installedFixture {
	t.Helper()
	store, err := pluginstore.New(t.TempDir(), pluginstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &installedFixture{status: &statusLog{last: map[string]host.PluginStatus{}, specs: map[string]host.Spec{}}}
	f.p = &installedPlugins{
		log: slog.New(slog.DiscardHandler), store: store, status: f.status,
		builtins: []string{"job"},
		reserved: func(name string) string {
			if name == "configured" {
				return "configured on this server"
			}
			return ""
		},
		fetch: func(_ context.Context, sum string) error {
			if f.peerBlob == nil {
				return errors.New("no other server has it")
			}
			return store.Put(sum, bytes.NewReader(f.peerBlob))
		},
		supervise: func(sp host.Spec, approved []rbacv1.PolicyRule) (*host.Supervisor, error) {
			f.started = append(f.started, sp)
			f.approved = append(f.approved, approved)
			// Never started for real: the test's executable is not a plugin.
			sp.Disabled = true
			return host.New(host.Config{APIEndpoint: "https://127.0.0.1:1", Credentials: func(context.Context, string, uint64) (proto.Credentials, time.Time, error) {
				return proto.Credentials{}, time.Time{}, errors.New("unused")
			}}, []host.Spec{sp})
		},
		prune:   func(context.Context) error { f.pruned++; return nil },
		kick:    make(chan struct{}, 1),
		running: map[string]installedRun{},
		waiting: map[string]string{},
	}
	f.p.list = func() []any {
		var out []any
		for _, r := range f.records {
			obj, err := r.Object()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, obj)
		}
		return out
	}
	return f
}

func blobSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestInstalledPluginWaitsForItsExecutable(t *testing.T) {
	f := newInstalledFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.p.mu.Lock()
	f.p.leadCtx, f.p.term = ctx, 7
	f.p.mu.Unlock()
	defer f.p.stopAll()

	blob := []byte("an executable")
	sum := blobSum(blob)
	f.records = []plugininstall.Record{{Name: "op", SHA256: sum, Preset: "read-only"}}

	// No server has the executable yet: waiting, with the reason; nothing runs.
	f.p.reconcile(ctx)
	st := f.status.get("op")
	if st.State != host.StateWaiting || !strings.Contains(st.LastError, "no other server has it") || st.Term != 7 {
		t.Fatalf("status %+v, want waiting with the fetch error in term 7", st)
	}
	if len(f.started) != 0 {
		t.Fatalf("started %v without its executable", f.started)
	}

	// Once a peer has it, the leader fetches it and runs it from the store.
	f.peerBlob = blob
	f.p.reconcile(ctx)
	if len(f.started) != 1 || f.started[0].Path != f.p.store.Path(sum) || f.started[0].SHA256 != sum {
		t.Fatalf("started %+v, want the stored executable pinned by %s", f.started, sum)
	}
	if len(f.approved[0]) == 0 {
		t.Error("the preset's rules were not approved")
	}

	// Nothing changed: nothing restarts.
	f.p.reconcile(ctx)
	if len(f.started) != 1 {
		t.Fatalf("an unchanged record restarted the plugin: %d starts", len(f.started))
	}

	// A configuration change restarts it with the new section.
	f.records[0].Config = []byte(`{"region":"eu-2"}`)
	f.p.reconcile(ctx)
	if len(f.started) != 2 || string(f.started[1].Config) != `{"region":"eu-2"}` {
		t.Fatalf("after a config change: starts %+v", f.started)
	}

	// Removed: stopped, its status and RBAC pruned.
	f.records = nil
	f.p.reconcile(ctx)
	if len(f.p.running) != 0 || f.pruned != 1 {
		t.Errorf("after removal: running %v, pruned %d times", f.p.running, f.pruned)
	}
}

func TestInstalledPluginRecordsThatCannotRun(t *testing.T) {
	f := newInstalledFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.p.mu.Lock()
	f.p.leadCtx, f.p.term = ctx, 3
	f.p.mu.Unlock()
	defer f.p.stopAll()
	blob := []byte("x")
	f.peerBlob = blob
	f.records = []plugininstall.Record{
		{Name: "greedy", SHA256: blobSum(blob)},                          // no approval
		{Name: "configured", SHA256: blobSum(blob), Preset: "read-only"}, // the server's own wins
	}
	f.p.reconcile(ctx)
	if st := f.status.get("greedy"); st.State != host.StateRefused || !strings.Contains(st.LastError, "approve the API permissions") {
		t.Errorf("invalid record: status %+v, want refused naming the missing approval", st)
	}
	if _, published := f.status.last["configured"]; published || len(f.started) != 0 {
		t.Errorf("a record named like a configured plugin was run or published: %v", f.started)
	}
	if f.p.store.Has(blobSum(blob)) {
		t.Error("an executable no runnable record names was fetched")
	}

	// Not the leader: the store is kept, nothing runs.
	f.records = []plugininstall.Record{{Name: "op", SHA256: blobSum(blob), Preset: "read-only"}}
	f.p.stopAll()
	f.p.reconcile(ctx)
	if !f.p.store.Has(blobSum(blob)) || len(f.started) != 0 {
		t.Errorf("a follower: stored %v, started %v; want the executable kept and nothing run", f.p.store.Has(blobSum(blob)), f.started)
	}
}
