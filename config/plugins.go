package config

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// AllBuiltinPlugins in Plugins.Disable turns every built-in plugin off (to
// run upstream controllers against a keelson server, say).
const AllBuiltinPlugins = "*"

// Plugins configures the controllers, scheduler, cloud provider and ingress
// plugins the raft leader runs. Built-in plugins run unless disabled;
// third-party ones are executables in Dir, listed in External.
type Plugins struct {
	// Dir holds third-party plugin executables; default DATA_DIR/plugins.
	Dir string `json:"dir"`
	// Disable lists built-in plugins not to run; "*" disables them all.
	Disable []string `json:"disable"`
	// Config holds each plugin's own configuration section, by plugin name
	// (built-in or third-party). The plugin receives it as JSON.
	Config map[string]json.RawMessage `json:"config"`
	// External lists the third-party plugins to run.
	External []ExternalPlugin `json:"external"`
	// NodeSelector limits a built-in node plugin (such as the LoadBalancer
	// announcer) to the Nodes carrying all the given labels, by plugin
	// name. External node plugins carry their own (ExternalPlugin).
	NodeSelector map[string]map[string]string `json:"nodeSelector"`
	// RunAs is the "UID:GID" third-party plugins run as when the server
	// runs as root: an unprivileged identity with no access to the data
	// directory. "server" runs them as the server itself. Default
	// DefaultPluginRunAs (nobody:nogroup).
	RunAs string `json:"runAs"`
	// Runtime sets the Go runtime's memory knobs (GOMEMLIMIT, GOGC) of
	// plugin processes, by plugin name; the "*" entry applies to every
	// plugin, field by field, where its own entry leaves a field unset.
	Runtime map[string]PluginRuntime `json:"runtime"`
	// StartConcurrency is how many plugins a new leader starts at a time:
	// a plugin holds its turn from launch until it first reports ready (or
	// its start fails, or StartHold passes), so a leader does not spend its
	// first seconds launching every plugin at once. Default
	// DefaultPluginStartConcurrency.
	StartConcurrency int `json:"startConcurrency"`
	// Groups serves several built-in plugins from one process each, by
	// group name (the opt-in shared mode; see PluginGroups). Default none:
	// every plugin is a process of its own.
	Groups PluginGroups `json:"groups"`
}

// DefaultPluginStartConcurrency is Plugins.StartConcurrency's default: two
// plugins per core of the 2-core machines keelson is measured on.
const DefaultPluginStartConcurrency = 4

// DefaultPluginRunAs is nobody:nogroup on Debian.
const DefaultPluginRunAs = "65534:65534"

// PluginRunAsServer in Plugins.RunAs runs third-party plugins as the server.
const PluginRunAsServer = "server"

// PluginIdentity parses RunAs; ok is false for PluginRunAsServer.
func (p *Plugins) PluginIdentity() (uid, gid uint32, ok bool, err error) {
	v := p.RunAs
	if v == "" {
		v = DefaultPluginRunAs
	}
	if v == PluginRunAsServer {
		return 0, 0, false, nil
	}
	u, g, found := strings.Cut(v, ":")
	uid64, uerr := strconv.ParseUint(u, 10, 32)
	gid64, gerr := strconv.ParseUint(g, 10, 32)
	if !found || uerr != nil || gerr != nil {
		return 0, 0, false, fmt.Errorf("plugins.runAs (--plugin-run-as): %q is not UID:GID (numbers, such as %s) nor %q", p.RunAs, DefaultPluginRunAs, PluginRunAsServer)
	}
	if uid64 == 0 {
		return 0, 0, false, fmt.Errorf("plugins.runAs (--plugin-run-as): %q is root; use %q to run third-party plugins as the server, or an unprivileged UID:GID", p.RunAs, PluginRunAsServer)
	}
	return uint32(uid64), uint32(gid64), true, nil
}

// ExternalPlugin is one third-party plugin executable.
type ExternalPlugin struct {
	// Name identifies the plugin in status, logs and its API identity.
	Name string `json:"name"`
	// File is the executable's name in Plugins.Dir; default Name.
	File string `json:"file"`
	// SHA256 is the executable's hex checksum: the host refuses to run a
	// binary that does not match it. Required.
	SHA256 string `json:"sha256"`
	// Rules are the API permissions the operator approves for the plugin;
	// Preset names a documented set of them (see pluginPresets). One of
	// the two is required. The plugin is granted the rules it declares,
	// and refused (state Refused, naming the rule) if it declares any rule
	// they do not cover.
	Rules  []rbacv1.PolicyRule `json:"rules,omitempty"`
	Preset string              `json:"preset,omitempty"`
	// Scope says who runs the plugin: "leader" (default) the raft leader,
	// "node" every node agent selected by NodeSelector (the executable in
	// each agent's plugin dir, pinned by SHA256, acting as that node),
	// "both" each part of a product that ships them in one binary.
	Scope string `json:"scope,omitempty"`
	// NodeSelector limits a node-scoped plugin to Nodes with these labels.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// The plugin scopes.
const (
	ScopeLeader = "leader"
	ScopeNode   = "node"
	ScopeBoth   = "both"
)

// RunsOnLeader reports whether the leader runs the plugin.
func (e ExternalPlugin) RunsOnLeader() bool { return e.Scope != ScopeNode }

// RunsOnNodes reports whether node agents run the plugin.
func (e ExternalPlugin) RunsOnNodes() bool { return e.Scope == ScopeNode || e.Scope == ScopeBoth }

// PluginDir is the effective third-party plugin directory.
func (c *Server) PluginDir() string {
	if c.Plugins.Dir != "" {
		return c.Plugins.Dir
	}
	return filepath.Join(c.DataDir, "plugins")
}

// PluginStoreDir is where a server keeps the executables of the plugins
// installed with `keelson plugin install`, by SHA-256.
func PluginStoreDir(dataDir string) string { return filepath.Join(dataDir, "plugin-store") }

// BuiltinDisabled reports whether built-in plugin name is disabled.
func (p *Plugins) BuiltinDisabled(name string) bool {
	return slices.Contains(p.Disable, AllBuiltinPlugins) || slices.Contains(p.Disable, name)
}

// ValidatePlugins checks the plugins section against the names of the
// built-in plugins, which only the binary knows.
func (p *Plugins) ValidatePlugins(builtins []string) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if p.Dir != "" && !filepath.IsAbs(p.Dir) {
		bad("plugins.dir (--plugin-dir): %q must be an absolute path", p.Dir)
	}
	for _, d := range p.Disable {
		if d != AllBuiltinPlugins && !slices.Contains(builtins, d) {
			bad("plugins.disable (--disable-plugin): %q is not a built-in plugin; built-ins are %s (or %q for all)",
				d, strings.Join(builtins, ", "), AllBuiltinPlugins)
		}
	}
	if _, _, _, err := p.PluginIdentity(); err != nil {
		bad("%v", err)
	}
	seen := map[string]bool{}
	for i, e := range p.External {
		field := fmt.Sprintf("plugins.external[%d]", i)
		if seen[e.Name] && e.Name != "" {
			bad("%s.name: %q is listed twice", field, e.Name)
		}
		seen[e.Name] = true
		errs = append(errs, e.Validate(field, p.Dir, builtins)...)
	}
	for name := range p.NodeSelector {
		if !slices.Contains(builtins, name) {
			bad("plugins.nodeSelector.%s: no built-in plugin is called %q; an external node plugin takes plugins.external[i].nodeSelector", name, name)
		}
	}
	for name, raw := range p.Config {
		if !slices.Contains(builtins, name) && !seen[name] {
			bad("plugins.config.%s (--plugin-config): no built-in or external plugin is called %q", name, name)
		} else if !json.Valid(raw) {
			bad("plugins.config.%s (--plugin-config): not valid JSON", name)
		}
	}
	errs = append(errs, p.validateGroups(builtins, seen)...)
	errs = append(errs, p.validateRuntime(func(name string) bool {
		_, group := p.Groups[name]
		return slices.Contains(builtins, name) || seen[name] || group
	})...)
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}

// Validate checks one third-party plugin, named field in the errors; dir
// is the plugin directory the checksum hint names.
func (e ExternalPlugin) Validate(field, dir string, builtins []string) []string {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if e.Name == "" {
		return []string{field + ".name: must not be empty"}
	}
	switch err := validDNSLabelish(e.Name); {
	case err != nil:
		bad("%s.name: %q %v", field, e.Name, err)
	case slices.Contains(builtins, e.Name):
		bad("%s.name: %q is the name of a built-in plugin; choose another", field, e.Name)
	}
	if e.File != "" && (strings.Contains(e.File, "/") || e.File == "." || e.File == "..") {
		bad("%s.file: %q must be a file name inside plugins.dir, not a path", field, e.File)
	}
	if sum, err := hex.DecodeString(e.SHA256); err != nil || len(sum) != 32 {
		hint := ""
		if _, err := strconv.ParseFloat(e.SHA256, 64); err == nil && e.SHA256 != "" {
			hint = ` (quote it in YAML: a checksum of digits reads as a number)`
		}
		bad("%s.sha256: %q is not a SHA-256 checksum%s; compute it with: sha256sum %s", field, e.SHA256, hint,
			filepath.Join(dir, e.FileName()))
	}
	switch e.Scope {
	case "", ScopeLeader, ScopeNode, ScopeBoth:
	default:
		bad("%s.scope: %q is not a scope; use %s, %s or %s", field, e.Scope, ScopeLeader, ScopeNode, ScopeBoth)
	}
	if len(e.NodeSelector) > 0 && !e.RunsOnNodes() {
		bad("%s.nodeSelector: only a plugin with scope %s or %s runs on nodes; set its scope or drop the selector", field, ScopeNode, ScopeBoth)
	}
	if e.RunsOnLeader() {
		errs = append(errs, e.validateApproval(field)...)
	}
	return errs
}

// FileName is the executable's file name in the plugin directory.
func (e ExternalPlugin) FileName() string {
	if e.File != "" {
		return e.File
	}
	return e.Name
}
