package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	rbacv1 "k8s.io/api/rbac/v1"
)

const sum = "3b1f4cd2a8f0e9d7c6b5a4938271605f4e3d2c1b0a99887766554433221100ff"

func TestPluginsFromFileAndFlags(t *testing.T) {
	file := writeFile(t, `
plugins:
  dir: /opt/keelson/plugins
  disable: [scheduler]
  config:
    scheduler: {percentageOfNodesToScore: 30}
    cm-everywhere: {configMapName: shared}
  external:
  - name: cm-everywhere
    sha256: `+sum+`
    rules:
    - apiGroups: [""]
      resources: [configmaps]
      verbs: [get, list, watch, create, update]
`)
	cfg, err := LoadServer(file, parse(t, "--plugin-config", `scheduler={"percentageOfNodesToScore":50}`))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plugins
	if cfg.PluginDir() != "/opt/keelson/plugins" || !p.BuiltinDisabled("scheduler") || p.BuiltinDisabled("replicaset") {
		t.Errorf("dir %s, disable %v", cfg.PluginDir(), p.Disable)
	}
	if string(p.Config["scheduler"]) != `{"percentageOfNodesToScore":50}` {
		t.Errorf("flag did not replace the scheduler's section: %s", p.Config["scheduler"])
	}
	if string(p.Config["cm-everywhere"]) != `{"configMapName":"shared"}` {
		t.Errorf("a flag for one plugin dropped another's section: %s", p.Config["cm-everywhere"])
	}
	if len(p.External) != 1 || p.External[0].FileName() != "cm-everywhere" || len(p.External[0].Rules) != 1 {
		t.Errorf("external = %+v", p.External)
	}
	if err := p.ValidatePlugins([]string{"scheduler", "replicaset"}); err != nil {
		t.Errorf("valid plugins refused: %v", err)
	}

	cfg, err = LoadServer(file, parse(t, "--plugin", "other="+sum+":read-only", "--disable-plugin", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Plugins.External) != 1 || cfg.Plugins.External[0].Name != "other" || cfg.Plugins.External[0].Preset != "read-only" {
		t.Errorf("--plugin did not replace the file's list: %+v", cfg.Plugins.External)
	}
	if !cfg.Plugins.BuiltinDisabled("replicaset") {
		t.Error("--disable-plugin '*' left a built-in enabled")
	}
	if cfg.PluginDir() != "/opt/keelson/plugins" {
		t.Errorf("plugin dir %s", cfg.PluginDir())
	}
	def := DefaultServer()
	if def.PluginDir() != def.DataDir+"/plugins" {
		t.Errorf("default plugin dir %s", def.PluginDir())
	}
}

func TestPluginsValidation(t *testing.T) {
	builtins := []string{"replicaset", "scheduler"}
	tests := []struct {
		name string
		p    Plugins
		want string
	}{
		{"relative dir", Plugins{Dir: "plugins"}, "plugins.dir (--plugin-dir)"},
		{"unknown disable", Plugins{Disable: []string{"schedular"}}, `"schedular" is not a built-in plugin; built-ins are replicaset, scheduler`},
		{"no name", Plugins{External: []ExternalPlugin{{SHA256: sum}}}, "plugins.external[0].name: must not be empty"},
		{"bad name", Plugins{External: []ExternalPlugin{{Name: "My_Op", SHA256: sum}}}, "plugins.external[0].name"},
		{"builtin name", Plugins{External: []ExternalPlugin{{Name: "scheduler", SHA256: sum}}}, "name of a built-in plugin"},
		{"twice", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum}, {Name: "a", SHA256: sum}}}, "plugins.external[1].name: \"a\" is listed twice"},
		{"path as file", Plugins{External: []ExternalPlugin{{Name: "a", File: "../a", SHA256: sum}}}, "plugins.external[0].file"},
		{"no checksum", Plugins{External: []ExternalPlugin{{Name: "a"}}}, "plugins.external[0].sha256: \"\" is not a SHA-256 checksum; compute it with: sha256sum"},
		{"short checksum", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: "abcd"}}}, "plugins.external[0].sha256"},
		{"no approval", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum}}}, `plugins.external[0].rules: approve the API permissions of third-party plugin "a"`},
		{"unknown preset", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum, Preset: "admin"}}}, `plugins.external[0].preset: "admin" is not a preset; presets are cloud-provider, ingress-controller, read-only`},
		{"rule without verbs", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum, Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}}}}}}, "plugins.external[0].rules[0].verbs"},
		{"rule without group", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum, Rules: []rbacv1.PolicyRule{{Resources: []string{"pods"}, Verbs: []string{"get"}}}}}}, "plugins.external[0].rules[0].apiGroups"},
		{"run as words", Plugins{RunAs: "nobody"}, `plugins.runAs (--plugin-run-as): "nobody" is not UID:GID`},
		{"run as root", Plugins{RunAs: "0:0"}, `plugins.runAs (--plugin-run-as): "0:0" is root; use "server"`},
		{"config for nobody", Plugins{Config: map[string]json.RawMessage{"ghost": json.RawMessage(`{}`)}}, `plugins.config.ghost (--plugin-config): no built-in or external plugin is called "ghost"`},
		{"unknown scope", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum, Preset: "read-only", Scope: "cluster"}}}, `plugins.external[0].scope: "cluster" is not a scope; use leader, node or both`},
		{"selector on a leader plugin", Plugins{External: []ExternalPlugin{{Name: "a", SHA256: sum, Preset: "read-only", NodeSelector: map[string]string{"k": "v"}}}}, "plugins.external[0].nodeSelector: only a plugin with scope node or both runs on nodes"},
		{"selector for no built-in", Plugins{NodeSelector: map[string]map[string]string{"announcr": {"k": "v"}}}, `plugins.nodeSelector.announcr: no built-in plugin is called "announcr"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.ValidatePlugins(builtins)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// A node-only plugin acts as each node: no leader rules to approve.
func TestNodeScopedPluginNeedsNoApproval(t *testing.T) {
	p := Plugins{External: []ExternalPlugin{{Name: "edge", SHA256: sum, Scope: ScopeNode, NodeSelector: map[string]string{"edge": "true"}}}}
	if err := p.ValidatePlugins(nil); err != nil {
		t.Errorf("a node-scoped plugin without rules refused: %v", err)
	}
	if e := p.External[0]; e.RunsOnLeader() || !e.RunsOnNodes() {
		t.Errorf("scope node: leader %v nodes %v", e.RunsOnLeader(), e.RunsOnNodes())
	}
	both := ExternalPlugin{Scope: ScopeBoth}
	if !both.RunsOnLeader() || !both.RunsOnNodes() || (ExternalPlugin{}).RunsOnNodes() {
		t.Error("scope both runs on neither, or the default scope runs on nodes")
	}
}

func TestPluginFlagsRefuseBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--plugin", "noequals"},
		{"--plugin-config", "scheduler={not json"},
	} {
		c := DefaultServer()
		set := pflag.NewFlagSet("test", pflag.ContinueOnError)
		ServerFlags(set, &c)
		if err := set.Parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// TestPluginPresetsHoldNoEscalation: a preset never carries a wildcard nor
// the escalate, bind or impersonate verbs, nor access to RBAC or
// certificates: those a plugin gets only where the operator wrote them.
func TestPluginPresetsHoldNoEscalation(t *testing.T) {
	for name, rules := range pluginPresets {
		for i, r := range rules {
			for _, list := range [][]string{r.Verbs, r.APIGroups, r.Resources, r.NonResourceURLs} {
				for _, v := range list {
					switch {
					case strings.Contains(v, "*"), v == "escalate", v == "bind", v == "impersonate",
						v == "rbac.authorization.k8s.io", v == "certificates.k8s.io":
						t.Errorf("preset %s rule %d holds %q", name, i, v)
					}
				}
			}
		}
	}
}

// TestIngressControllerPresetIsLeaderPartOnly: the ingress-controller
// preset approves what an ingress plugin's leader part reads and writes,
// and nothing an ingress controller on Keelson has no use for: leases (the
// host runs one instance: no leader election), pods (backends are
// EndpointSlices), ConfigMaps (its configuration is plugins.config.NAME),
// and no write beyond Ingress status and Events.
func TestIngressControllerPresetIsLeaderPartOnly(t *testing.T) {
	granted := map[string]bool{}
	for _, r := range pluginPresets["ingress-controller"] {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					granted[g+"/"+res+":"+v] = true
				}
			}
		}
	}
	for _, need := range []string{"networking.k8s.io/ingresses:watch", "networking.k8s.io/ingressclasses:list",
		"networking.k8s.io/ingresses/status:update", "/services:watch", "discovery.k8s.io/endpointslices:watch",
		"/secrets:get", "/nodes:list", "/events:create"} {
		if !granted[need] {
			t.Errorf("the ingress-controller preset lacks %s, which an ingress plugin's leader part needs", need)
		}
	}
	for key := range granted {
		res, verb, _ := strings.Cut(key, ":")
		switch {
		case strings.HasPrefix(res, "coordination.k8s.io/"), res == "/pods", res == "/configmaps":
			t.Errorf("the ingress-controller preset grants %s, which an ingress plugin on Keelson has no use for", key)
		case verb != "get" && verb != "list" && verb != "watch" && res != "networking.k8s.io/ingresses/status" && !strings.HasSuffix(res, "/events"):
			t.Errorf("the ingress-controller preset grants the write %s", key)
		}
	}
}
