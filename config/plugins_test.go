package config

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
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

	cfg, err = LoadServer(file, parse(t, "--plugin", "other="+sum, "--disable-plugin", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Plugins.External) != 1 || cfg.Plugins.External[0].Name != "other" {
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
		{"config for nobody", Plugins{Config: map[string]json.RawMessage{"ghost": json.RawMessage(`{}`)}}, `plugins.config.ghost (--plugin-config): no built-in or external plugin is called "ghost"`},
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
