package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/apiserver"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/core/plugininstall"
	"github.com/keelson/keelson/plugins/host"
	"github.com/keelson/keelson/plugins/proto"
)

// PluginCredentialLifetime is how long a plugin's client certificate is
// valid; the host restarts the plugin with a new one after two thirds of it.
const PluginCredentialLifetime = 7 * 24 * time.Hour

// pluginHost runs the configured plugins while this server is the raft
// leader: it installs the Plugin CRD, grants each plugin its RBAC, issues it
// a certificate bound to the leader's term and publishes its state.
type pluginHost struct {
	log   *slog.Logger
	sup   *host.Supervisor
	specs []host.Spec
	// groups are the built-ins served together (plugins.groups); each
	// group's name is also its read identity's.
	groups []host.Group
	rules  map[string][]rbacv1.PolicyRule
	// nodeRules are Options.NodeRules, granted to every node.
	nodeRules []rbacv1.PolicyRule
	// nodePlugins are the node plugin declarations the leader publishes.
	nodePlugins []host.NodePlugin
	// clusterDNS is the cluster DNS address the kube-dns Service holds.
	clusterDNS string
	kube       kubernetes.Interface
	dyn        dynamic.Interface
	crds       apiextensions.Interface
	status     *statusWriter
	// supCfg is the supervisors' configuration (without Authorize).
	supCfg host.Config
	// installed runs the plugins installed through the API.
	installed *installedPlugins
}

// nodeRoleName names the ClusterRole (and its binding) of what every node
// agent may read beyond the Node authorizer's grants.
const nodeRoleName = "keelson:node"

// keyFiles names, by built-in plugin and key of its config section, the
// server files whose contents that plugin needs to do its job: a plugin
// never reads the server's files, so they travel in its configuration.
// token signs legacy service-account tokens (plugins/builtin/token);
// csrsigning signs approved CertificateSigningRequests with the signer CA,
// which can mint API client certificates only (see pki.Bundle.CSRSigner).
func keyFiles(b *pki.Bundle) map[string]map[string]string {
	return map[string]map[string]string{
		"token":      {"serviceAccountKeyPEM": b.ServiceAccountKey},
		"csrsigning": {"caCertPEM": b.CSRSigner.CertFile, "caKeyPEM": b.CSRSigner.KeyFile},
	}
}

// withKeyFiles adds the contents of files (config key -> path) to a
// plugin's config section, each unless the operator set that key.
func withKeyFiles(plugin string, section json.RawMessage, files map[string]string) (json.RawMessage, error) {
	contents := map[string]any{}
	for key, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("plugin %s: reading %s for its %s: %w", plugin, path, key, err)
		}
		contents[key] = string(b)
	}
	out, err := withDefaults(section, contents)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: config section %w", plugin, err)
	}
	return out, nil
}

// pluginSpecs turns the configuration into launch specs: every built-in
// (disabled ones listed so their state shows), then the third-party ones.
// Built-ins run from bin.
func pluginSpecs(cfg config.Server, bin host.BuiltinBinary, builtins []string) ([]host.Spec, error) {
	var specs []host.Spec
	derived := derivedPluginConfig(cfg)
	for _, name := range builtins {
		section, err := withDefaults(cfg.Plugins.Config[name], derived[name])
		if err != nil {
			return nil, fmt.Errorf("plugins.config.%s (--plugin-config): %w", name, err)
		}
		sp := host.BuiltinSpec(bin, name, section)
		sp.Env = cfg.Plugins.PluginRuntimeFor(name).Env()
		sp.Disabled = cfg.Plugins.BuiltinDisabled(name)
		specs = append(specs, sp)
	}
	for _, e := range cfg.Plugins.External {
		if e.RunsOnLeader() {
			sp := host.ThirdPartySpec(e.Name, cfg.PluginDir(), e.FileName(), e.SHA256, cfg.Plugins.Config[e.Name])
			sp.Env = cfg.Plugins.PluginRuntimeFor(e.Name).Env()
			specs = append(specs, sp)
		}
	}
	return specs, nil
}

// pluginGroups are the configured groups of built-in plugins (the opt-in
// shared mode), each launched as one process from bin, in name order.
// None by default: every plugin then has a process of its own.
func pluginGroups(cfg config.Server, bin host.BuiltinBinary, builtins []string) []host.Group {
	resolved := cfg.Plugins.ResolvedGroups(builtins)
	names := make([]string, 0, len(resolved))
	for name := range resolved {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []host.Group
	for _, name := range names {
		sp := host.BuiltinGroupSpec(bin, name, resolved[name])
		sp.Env = cfg.Plugins.PluginRuntimeFor(name).Env()
		out = append(out, host.Group{Name: name, Process: sp, Members: resolved[name]})
	}
	return out
}

// nodePluginDecls are the node plugins the agents run: the enabled
// built-in node plugins, then the external plugins of scope node or both.
// A built-in also gets its node selector in its config section
// (nodeSelector), so it knows which nodes run it.
func nodePluginDecls(cfg config.Server, builtins []string) ([]host.NodePlugin, error) {
	var out []host.NodePlugin
	for _, name := range builtins {
		if cfg.Plugins.BuiltinDisabled(name) {
			continue
		}
		sel := cfg.Plugins.NodeSelector[name]
		section := cfg.Plugins.Config[name]
		if len(sel) > 0 {
			var err error
			if section, err = withDefaults(section, map[string]any{"nodeSelector": sel}); err != nil {
				return nil, fmt.Errorf("plugins.config.%s (--plugin-config): %w", name, err)
			}
		}
		out = append(out, host.NodePlugin{Name: name, Builtin: true, NodeSelector: sel, Config: section, Env: cfg.Plugins.PluginRuntimeFor(name).Env()})
	}
	for _, e := range cfg.Plugins.External {
		if e.RunsOnNodes() {
			out = append(out, host.NodePlugin{Name: e.Name, File: e.FileName(), SHA256: e.SHA256, NodeSelector: e.NodeSelector, Config: cfg.Plugins.Config[e.Name],
				Env: cfg.Plugins.PluginRuntimeFor(e.Name).Env()})
		}
	}
	return out, nil
}

func (s *Server) newPluginHost(admin *rest.Config, url string) (*pluginHost, error) {
	bin, err := host.ResolveBuiltinBinary(s.cfg.DataDir)
	if err != nil {
		return nil, err
	}
	bin.Lacks = s.opts.ServedByKeelson
	s.log.Info("built-in plugins run from "+bin.Path, "sha256", bin.SHA256, "served_by_keelson", bin.Lacks)
	specs, err := pluginSpecs(s.cfg, bin, s.opts.BuiltinPlugins)
	if err != nil {
		return nil, err
	}
	keys := keyFiles(s.bundle)
	for i := range specs {
		if files := keys[specs[i].Name]; specs[i].Builtin && !specs[i].Disabled && files != nil {
			if specs[i].Config, err = withKeyFiles(specs[i].Name, specs[i].Config, files); err != nil {
				return nil, err
			}
		}
	}
	caPEM, err := os.ReadFile(s.bundle.CA.CertFile)
	if err != nil {
		return nil, fmt.Errorf("plugin host: reading the cluster CA: %w", err)
	}
	nodePlugins, err := nodePluginDecls(s.cfg, s.opts.BuiltinNodePlugins)
	if err != nil {
		return nil, err
	}
	groups := pluginGroups(s.cfg, bin, s.opts.BuiltinPlugins)
	h := &pluginHost{log: s.log.With("component", "plugin-host"), specs: specs, groups: groups, rules: map[string][]rbacv1.PolicyRule{},
		nodeRules:   append(slices.Clone(s.opts.NodeRules), nodePluginRules()...),
		nodePlugins: nodePlugins}
	if ip, err := config.ServiceIP(s.cfg.APIServer.ServiceCIDR, 10); err == nil {
		h.clusterDNS = ip.String()
	}
	for _, e := range s.cfg.Plugins.External {
		h.rules[e.Name] = e.ApprovedRules()
	}
	if h.kube, err = kubernetes.NewForConfig(admin); err != nil {
		return nil, err
	}
	if h.dyn, err = dynamic.NewForConfig(admin); err != nil {
		return nil, err
	}
	if h.crds, err = apiextensions.NewForConfig(admin); err != nil {
		return nil, err
	}
	h.status = newStatusWriter(h.dyn, s.cfg.NodeName, specs, h.log)
	runAs, err := s.pluginRunAs()
	if err != nil {
		return nil, err
	}
	bundle := s.bundle
	h.supCfg = host.Config{
		RunAs:       runAs,
		SocketDir:   s.pluginSockets,
		APIEndpoint: url,
		CAPEM:       caPEM,
		Logger:      h.log,
		OnChange:    h.status.set,
		// A new leader starts its plugins a few at a time (issue 24).
		StartConcurrency: s.cfg.Plugins.StartConcurrency,
		Credentials: func(_ context.Context, name string, term uint64) (proto.Credentials, time.Time, error) {
			now := time.Now()
			c, err := bundle.IssuePlugin(name, term, PluginCredentialLifetime, now)
			if err != nil {
				return proto.Credentials{}, time.Time{}, err
			}
			renew := now.Add(c.NotAfter.Sub(now) * 2 / 3)
			return proto.Credentials{ClientCertPEM: c.CertPEM, ClientKeyPEM: c.KeyPEM}, renew, nil
		},
	}
	cfg := h.supCfg
	cfg.Authorize = h.authorize
	cfg.Groups = groups // the installed plugins' supervisors run no group
	if h.sup, err = host.New(cfg, specs); err != nil {
		return nil, err
	}
	servePluginMetrics(h.sup.Metrics, h.log)
	h.installed = s.newInstalledPlugins(h, specs)
	return h, nil
}

// newInstalledPlugins is the host's runner of the plugins installed through
// the API (PluginInstall objects), sharing its supervisors' configuration.
func (s *Server) newInstalledPlugins(h *pluginHost, specs []host.Spec) *installedPlugins {
	configured := map[string]bool{}
	for _, sp := range specs {
		configured[sp.Name] = true
	}
	for _, n := range s.opts.BuiltinNodePlugins {
		configured[n] = true
	}
	for _, e := range s.cfg.Plugins.External {
		configured[e.Name] = true
	}
	for _, g := range h.groups {
		configured[g.Name] = true
	}
	return &installedPlugins{
		log: h.log.With("installed", true), store: s.pluginStore, dyn: h.dyn, status: h.status,
		builtins: append(slices.Clone(s.opts.BuiltinPlugins), s.opts.BuiltinNodePlugins...),
		fetch: func(ctx context.Context, sum string) error {
			return ops.FetchPluginBlobFromPeers(ctx, s.raft, s.pluginStore, sum)
		},
		reserved: func(name string) string {
			if configured[name] {
				return "a built-in, plugins.external (--plugin) plugin or plugins.groups group of this server has that name"
			}
			return ""
		},
		supervise: func(sp host.Spec, approved []rbacv1.PolicyRule) (*host.Supervisor, error) {
			cfg := h.supCfg
			cfg.Authorize = h.installedAuthorize(approved)
			return host.New(cfg, []host.Spec{sp})
		},
		prune:   h.prune,
		kick:    make(chan struct{}, 1),
		running: map[string]installedRun{},
		waiting: map[string]string{},
	}
}

// pluginRunAs is the identity third-party plugins run as (nil: as the
// server), with the directory for the verified copies of their executables
// (host.PrepareExecDir: one per data dir, emptied for each term's plugins,
// whose processes the previous term's Stop ended).
func (s *Server) pluginRunAs() (*host.RunAs, error) {
	uid, gid, ok, err := s.cfg.Plugins.PluginIdentity()
	if err != nil || !ok {
		return nil, err
	}
	if os.Geteuid() != 0 {
		s.log.Warn("third-party plugins run as the server's own user: changing their user needs root", "plugins.runAs", s.cfg.Plugins.RunAs)
		return nil, nil
	}
	dir, err := host.PrepareExecDir(s.cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("plugin host: directory for third-party executables: %w", err)
	}
	return &host.RunAs{UID: uid, GID: gid, ExecDir: dir}, nil
}

// authorize grants the plugin the rules it declared. A third-party plugin's
// declared rules must fall within what the operator approved for it
// (plugins.external[i].rules and preset); otherwise it is refused, naming
// every rule beyond the approval, and gets nothing.
func (h *pluginHost) authorize(ctx context.Context, sp host.Spec, desc proto.Description) error {
	if approved, ok := h.rules[sp.Name]; ok {
		if err := withinApproval(sp.Name, approvedByConfig, approved, desc.Rules); err != nil {
			return host.Refuse(err)
		}
	}
	return grantRules(ctx, h.kube, sp.Name, desc.Rules)
}

// prepare makes the API ready for a new term's plugins.
func (h *pluginHost) prepare(ctx context.Context) error {
	if err := ensurePluginCRD(ctx, h.crds); err != nil {
		return err
	}
	if err := ensureCRD(ctx, h.crds, plugininstall.CRD()); err != nil {
		return err
	}
	if err := ensureGatewayCRDs(ctx, h.crds); err != nil {
		return err
	}
	if err := ensureNodePluginPolicy(ctx, h.kube); err != nil {
		return err
	}
	if h.clusterDNS != "" {
		if err := ensureClusterDNSService(ctx, h.kube, h.clusterDNS); err != nil {
			// Not fatal for the plugins: pods still resolve through the
			// agents; the address is merely not reserved.
			h.log.Warn("reserving the cluster DNS address", "err", err)
		}
	}
	if len(h.nodeRules) > 0 {
		meta := metav1.ObjectMeta{Name: nodeRoleName}
		nodes := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: pki.NodesGroup}
		if err := ensureClusterRole(ctx, h.kube, meta, h.nodeRules, nodes); err != nil {
			return err
		}
	}
	if err := publishNodePlugins(ctx, h.kube, h.nodePlugins); err != nil {
		return err
	}
	return h.prune(ctx)
}

// prune deletes the Plugin objects and RBAC of every plugin neither
// configured on this server nor installed (PluginInstall).
func (h *pluginHost) prune(ctx context.Context) error {
	names, err := installedNames(ctx, h.dyn)
	if err != nil {
		return err
	}
	var nodeNames []string
	for _, sp := range h.specs {
		names = append(names, sp.Name)
	}
	for _, g := range h.groups {
		names = append(names, g.Name) // its read identity's RBAC
	}
	for _, d := range h.nodePlugins {
		nodeNames = append(nodeNames, d.Name)
	}
	return pruneUnconfigured(ctx, h.kube, h.dyn, names, nodeNames)
}

// adminRESTConfig reaches the local API server as the cluster admin, for
// the control plane's own work on the leader.
func (s *Server) adminRESTConfig(userAgent string) *rest.Config {
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(apiserver.LocalHost(s.cfg.BindAddress), strconv.Itoa(s.cfg.APIServer.Port)),
		TLSClientConfig: rest.TLSClientConfig{CAFile: s.bundle.CA.CertFile, CertFile: s.bundle.Admin.CertFile, KeyFile: s.bundle.Admin.KeyFile},
		UserAgent:       userAgent,
		QPS:             20, Burst: 40,
	}
}

// lead runs the plugins for one term this server leads: it prepares the
// API for them (retrying until it succeeds or ctx ends), starts every
// plugin with credentials bound to term, and stops them when ctx ends.
func (h *pluginHost) lead(ctx context.Context, term uint64) {
	start := time.Now()
	for {
		err := h.prepare(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("preparing the API for plugins; retrying", "term", term, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	if err := h.sup.Start(ctx, term); err != nil {
		h.log.Error("starting plugins", "term", term, "err", err)
		return
	}
	h.log.Info("started plugins as leader", "term", term, "plugins", len(h.specs), "prepare", time.Since(start).Round(time.Millisecond))
	h.installed.lead(ctx, term)
	h.log.Info("stopping plugins", "term", term)
	h.sup.Stop()
}
