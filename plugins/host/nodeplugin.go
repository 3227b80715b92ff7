package host

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Where the raft leader publishes the node plugin declarations and where
// every agent reads them with its node credentials (a ConfigMap only these
// names of which nodes may read; see NodePluginRules).
const (
	NodePluginsNamespace = "kube-system"
	NodePluginsConfigMap = "keelson-node-plugins"
	NodePluginsKey       = "plugins.json"
)

// NodePlugin declares a plugin that node agents run (scope node): the
// server configuration says which, and each agent starts the ones whose
// NodeSelector matches its Node's labels. The executable is the agent's
// own: its built-in plugins executable for a built-in, the file in the
// agent's plugin directory for a third-party one, which must match SHA256.
type NodePlugin struct {
	Name    string `json:"name"`
	Builtin bool   `json:"builtin,omitempty"`
	// File is the executable's name in the agent's plugin directory.
	File   string `json:"file,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// NodeSelector, when set, limits the plugin to Nodes with all these
	// labels.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Config is the plugin's configuration section. Every node may read
	// it: it must hold no secret.
	Config json.RawMessage `json:"config,omitempty"`
	// Env is the plugin process's environment (GOMEMLIMIT, GOGC).
	Env []string `json:"env,omitempty"`
}

// Selects reports whether a node with these labels runs the plugin.
func (n NodePlugin) Selects(labels map[string]string) bool {
	for k, v := range n.NodeSelector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Spec is how an agent launches the plugin: a built-in from builtins, a
// third-party one from its plugin directory.
func (n NodePlugin) Spec(builtins BuiltinBinary, pluginDir string) (Spec, error) {
	if n.Builtin {
		sp := BuiltinSpec(builtins, n.Name, n.Config)
		sp.Env = n.Env
		return sp, sp.validate()
	}
	if n.File == "" || strings.Contains(n.File, "/") {
		return Spec{}, fmt.Errorf("node plugin %s: file %q must be a file name inside the agent's plugin dir", n.Name, n.File)
	}
	sp := ThirdPartySpec(n.Name, pluginDir, n.File, n.SHA256, n.Config)
	sp.Env = n.Env
	if err := sp.validate(); err != nil {
		return Spec{}, err
	}
	return sp, nil
}

// NodeStatusName is the Plugin object that shows plugin's state on node.
func NodeStatusName(plugin, node string) string { return plugin + "." + node }

// EncodeNodePlugins is the ConfigMap value for decls, sorted by name so
// that an unchanged configuration writes the same bytes.
func EncodeNodePlugins(decls []NodePlugin) (string, error) {
	decls = slices.Clone(decls)
	slices.SortFunc(decls, func(a, b NodePlugin) int { return strings.Compare(a.Name, b.Name) })
	b, err := json.Marshal(decls)
	return string(b), err
}

// DecodeNodePlugins reads the ConfigMap value.
func DecodeNodePlugins(s string) ([]NodePlugin, error) {
	var out []NodePlugin
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("node plugin declarations (%s/%s key %s): %w", NodePluginsNamespace, NodePluginsConfigMap, NodePluginsKey, err)
	}
	return out, nil
}
