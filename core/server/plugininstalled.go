package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/core/plugininstall"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
)

// installedPlugins runs on every server. It keeps the server's plugin store
// holding the executable of every PluginInstall, fetched from the other
// servers when missing, and drops those no record names; while the server
// leads, it runs each installed plugin under a supervisor of its own, so a
// changed record restarts that plugin only. A name the server's own
// configuration uses (a built-in or a plugins.external entry) stays the
// configured plugin's: the record is ignored with a warning.
type installedPlugins struct {
	log   *slog.Logger
	store *pluginstore.Store
	// fetch copies an executable into store from another server.
	fetch func(ctx context.Context, sum string) error
	// reserved says why a name cannot be installed ("" if it can).
	reserved func(name string) string
	builtins []string
	// supervise builds the supervisor of one installed plugin, approved
	// for approved.
	supervise func(sp host.Spec, approved []rbacv1.PolicyRule) (*host.Supervisor, error)
	// prune deletes the Plugin objects and RBAC of plugins no longer
	// configured or installed.
	prune  func(ctx context.Context) error
	status pluginStatusSink
	dyn    dynamic.Interface

	kick chan struct{}
	// list returns the PluginInstall objects (the informer's cache).
	list func() []any

	mu      sync.Mutex
	term    uint64
	leadCtx context.Context // nil while this server does not lead
	running map[string]installedRun
	waiting map[string]string // name -> why, as last published
}

// pluginStatusSink publishes plugin states (statusWriter).
type pluginStatusSink interface {
	set(host.PluginStatus)
	setSpec(host.Spec)
}

type installedRun struct {
	key string
	sup *host.Supervisor
}

// installedResync re-reads the records this often even without a change:
// an executable no server could provide is tried again.
const installedResync = 10 * time.Second

// fetchTimeout bounds one attempt to fetch an executable from the servers.
const fetchTimeout = 2 * time.Minute

// run watches the PluginInstall objects and reconciles until ctx ends.
func (p *installedPlugins) run(ctx context.Context) {
	f := dynamicinformer.NewDynamicSharedInformerFactory(p.dyn, 0)
	informer := f.ForResource(plugininstall.GVR).Informer()
	p.list = informer.GetStore().List
	kick := func(any) { p.poke() }
	_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: kick, DeleteFunc: kick, UpdateFunc: func(_, n any) { p.poke() },
	})
	f.Start(ctx.Done())
	defer f.Shutdown()
	tick := time.NewTicker(installedResync)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			p.stopAll()
			return
		case <-p.kick:
		case <-tick.C:
		}
		if informer.HasSynced() {
			p.reconcile(ctx)
		}
	}
}

func (p *installedPlugins) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// records are the valid, installable records; invalid ones are logged
// (and, on the leader, published as refused).
func (p *installedPlugins) records() (valid []plugininstall.Record, refused map[string]string) {
	refused = map[string]string{}
	for _, obj := range p.list() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		r, err := plugininstall.FromObject(u)
		if err == nil {
			err = r.Validate(p.builtins)
		}
		if err != nil {
			refused[u.GetName()] = err.Error()
			continue
		}
		if why := p.reserved(r.Name); why != "" {
			p.log.Warn("ignoring an installed plugin: its name is configured on this server, whose configuration wins", "plugin", r.Name, "reason", why)
			continue
		}
		valid = append(valid, r)
	}
	slices.SortFunc(valid, func(a, b plugininstall.Record) int { return compareStrings(a.Name, b.Name) })
	return valid, refused
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// reconcile fills and collects the store, then, on the leader, brings the
// running plugins in line with the records.
func (p *installedPlugins) reconcile(ctx context.Context) {
	recs, refused := p.records()
	missing := map[string]string{}
	keep := map[string]bool{}
	for _, r := range recs {
		keep[r.SHA256] = true
		if p.store.Has(r.SHA256) {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		err := p.fetch(fctx, r.SHA256)
		cancel()
		if err != nil {
			p.log.Warn("fetching an installed plugin's executable from the other servers", "plugin", r.Name, "sha256", r.SHA256, "err", err)
			missing[r.Name] = fmt.Sprintf("its executable (sha256 %s) is not on this server yet; fetching it from the other servers: %v", r.SHA256, err)
			continue
		}
		p.log.Info("fetched an installed plugin's executable", "plugin", r.Name, "sha256", r.SHA256)
	}
	if removed, err := p.store.GC(keep); err != nil {
		p.log.Warn("collecting unreferenced plugin executables", "err", err)
	} else if len(removed) > 0 {
		p.log.Info("removed plugin executables no PluginInstall names", "sha256", removed)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leadCtx == nil || p.leadCtx.Err() != nil {
		return
	}
	p.reconcileRunning(recs, missing, refused)
}

// reconcileRunning stops the plugins whose record changed or went away
// and starts those that are not running; called with mu held, as leader.
func (p *installedPlugins) reconcileRunning(recs []plugininstall.Record, missing, refused map[string]string) {
	want := map[string]plugininstall.Record{}
	for _, r := range recs {
		want[r.Name] = r
	}
	removed := false
	for name, run := range p.running {
		if r, ok := want[name]; !ok || r.Key() != run.key || missing[name] != "" {
			p.log.Info("stopping an installed plugin: its PluginInstall changed or was removed", "plugin", name)
			run.sup.Stop()
			delete(p.running, name)
			removed = removed || !ok
		}
	}
	for name, why := range refused {
		p.publishIdle(name, host.StateRefused, "PluginInstall "+name+" is not valid: "+why)
	}
	for _, r := range recs {
		if _, ok := p.running[r.Name]; ok {
			continue
		}
		if why := missing[r.Name]; why != "" {
			p.publishIdle(r.Name, host.StateWaiting, why)
			continue
		}
		if err := p.start(r); err != nil {
			p.log.Error("starting an installed plugin", "plugin", r.Name, "err", err)
			p.publishIdle(r.Name, host.StateRefused, err.Error())
		}
	}
	for name := range p.waiting {
		if _, ok := want[name]; !ok && refused[name] == "" {
			delete(p.waiting, name)
			removed = true
		}
	}
	if removed {
		if err := p.prune(p.leadCtx); err != nil {
			p.log.Warn("removing the status and permissions of removed plugins", "err", err)
		}
	}
}

// start runs one installed plugin for the current term; mu held.
func (p *installedPlugins) start(r plugininstall.Record) error {
	sp := host.ThirdPartySpec(r.Name, p.store.Dir(), r.SHA256, r.SHA256, r.Config)
	p.status.setSpec(sp)
	sup, err := p.supervise(sp, r.External().ApprovedRules())
	if err != nil {
		return err
	}
	if err := sup.Start(p.leadCtx, p.term); err != nil {
		return err
	}
	delete(p.waiting, r.Name)
	p.running[r.Name] = installedRun{key: r.Key(), sup: sup}
	p.log.Info("started an installed plugin", "plugin", r.Name, "sha256", r.SHA256, "term", p.term)
	return nil
}

// publishIdle reports a plugin that does not run, once per reason.
func (p *installedPlugins) publishIdle(name string, state host.State, why string) {
	if p.waiting[name] == string(state)+why {
		return
	}
	p.waiting[name] = string(state) + why
	p.status.set(host.PluginStatus{Name: name, State: state, LastError: why, Term: p.term, Since: time.Now()})
}

// lead runs the installed plugins for one term, until ctx ends.
func (p *installedPlugins) lead(ctx context.Context, term uint64) {
	p.mu.Lock()
	p.leadCtx, p.term = ctx, term
	p.waiting = map[string]string{}
	p.mu.Unlock()
	p.poke()
	<-ctx.Done()
	p.stopAll()
}

// stopAll stops every installed plugin and forgets the term.
func (p *installedPlugins) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, run := range p.running {
		run.sup.Stop()
		delete(p.running, name)
	}
	p.leadCtx = nil
}

// installedNames lists every PluginInstall's name, valid or not: their
// Plugin objects are not stale.
func installedNames(ctx context.Context, dyn dynamic.Interface) ([]string, error) {
	list, err := dyn.Resource(plugininstall.GVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing PluginInstalls: %w", err)
	}
	var out []string
	for _, it := range list.Items {
		out = append(out, it.GetName())
	}
	return out, nil
}

// installedAuthorize is an installed plugin's AuthorizeFunc: its declared
// rules within what its PluginInstall approves, then granted.
func (h *pluginHost) installedAuthorize(approved []rbacv1.PolicyRule) host.AuthorizeFunc {
	return func(ctx context.Context, sp host.Spec, desc proto.Description) error {
		if err := withinApproval(sp.Name, approvedByInstall, approved, desc.Rules); err != nil {
			return host.Refuse(err)
		}
		return grantRules(ctx, h.kube, sp.Name, desc.Rules)
	}
}
