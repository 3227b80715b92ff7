package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestPluginGroupsFromFileAndFlags(t *testing.T) {
	file := writeFile(t, `
plugins:
  groups:
    small: [replicaset, deployment]
    other: [endpointslice]
`)
	cfg, err := LoadServer(file, parse(t, "--plugin-group", "other=endpointslice,podgc"))
	if err != nil {
		t.Fatal(err)
	}
	want := PluginGroups{"small": {"replicaset", "deployment"}, "other": {"endpointslice", "podgc"}}
	if !reflect.DeepEqual(cfg.Plugins.Groups, want) {
		t.Errorf("groups %v, want %v (the flag replaces its group, keeps the file's others)", cfg.Plugins.Groups, want)
	}
	builtins := []string{"deployment", "endpointslice", "podgc", "replicaset", "scheduler"}
	if err := cfg.Plugins.ValidatePlugins(builtins); err != nil {
		t.Errorf("valid groups refused: %v", err)
	}
	if g := cfg.Plugins.GroupOf("podgc", builtins); g != "other" {
		t.Errorf("podgc is in group %q, want other", g)
	}
	if g := cfg.Plugins.GroupOf("scheduler", builtins); g != "" {
		t.Errorf("scheduler is in group %q, want none", g)
	}
	var groups PluginGroups
	if err := (&pluginGroupValue{&groups}).Set("small"); err == nil || !strings.Contains(err.Error(), "is not NAME=MEMBER,MEMBER") {
		t.Errorf("--plugin-group without members: error %v", err)
	}
}

func TestAllMembersGroupTakesEveryEnabledBuiltinNotGroupedElsewhere(t *testing.T) {
	p := Plugins{Disable: []string{"podgc"}, Groups: PluginGroups{"all": {"*"}, "pair": {"replicaset", "deployment"}}}
	builtins := []string{"deployment", "endpointslice", "podgc", "replicaset", "scheduler"}
	if err := p.ValidatePlugins(builtins); err != nil {
		t.Fatal(err)
	}
	got := p.ResolvedGroups(builtins)
	want := PluginGroups{"all": {"endpointslice", "scheduler"}, "pair": {"deployment", "replicaset"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("resolved %v, want %v", got, want)
	}
}

func TestPluginGroupsValidation(t *testing.T) {
	builtins := []string{"deployment", "replicaset", "scheduler"}
	ext := []ExternalPlugin{{Name: "op", SHA256: sum, Preset: "read-only"}}
	tests := []struct {
		name string
		p    Plugins
		want string
	}{
		{"unknown member", Plugins{Groups: PluginGroups{"g": {"replicaset", "deploymnt"}}},
			`plugins.groups.g (--plugin-group): "deploymnt" is not a built-in leader plugin (node plugins run on the agents); built-ins are deployment, replicaset, scheduler`},
		{"node plugin", Plugins{Groups: PluginGroups{"g": {"announcer"}}}, `"announcer" is not a built-in leader plugin (node plugins run on the agents)`},
		{"third-party member", Plugins{External: ext, Groups: PluginGroups{"g": {"op"}}},
			`plugins.groups.g (--plugin-group): "op" is a third-party plugin, which always runs in its own process`},
		{"member in two groups", Plugins{Groups: PluginGroups{"a": {"replicaset"}, "b": {"replicaset"}}},
			`plugins.groups.b (--plugin-group): "replicaset" is already in group a; a plugin runs in one process only`},
		{"listed twice", Plugins{Groups: PluginGroups{"g": {"replicaset", "replicaset"}}}, `"replicaset" is listed twice`},
		{"disabled member", Plugins{Disable: []string{"scheduler"}, Groups: PluginGroups{"g": {"scheduler"}}},
			`plugins.groups.g (--plugin-group): "scheduler" is disabled (plugins.disable); remove it from the group or enable it`},
		{"no members", Plugins{Groups: PluginGroups{"g": {}}}, "plugins.groups.g (--plugin-group): lists no members"},
		{"named like a plugin", Plugins{Groups: PluginGroups{"scheduler": {"replicaset"}}}, `"scheduler" is a plugin's name; name the group something else`},
		{"named like a third-party plugin", Plugins{External: ext, Groups: PluginGroups{"op": {"replicaset"}}}, `"op" is a plugin's name`},
		{"bad group name", Plugins{Groups: PluginGroups{"Small_G": {"replicaset"}}}, `plugins.groups.Small_G (--plugin-group): the group name "Small_G" has`},
		{"star with others", Plugins{Groups: PluginGroups{"g": {"*", "replicaset"}}}, `"*" means every built-in plugin and stands alone`},
		{"two star groups", Plugins{Groups: PluginGroups{"a": {"*"}, "b": {"*"}}}, `only one group may take every built-in plugin`},
		{"member's own runtime", Plugins{Groups: PluginGroups{"g": {"replicaset"}}, Runtime: map[string]PluginRuntime{"replicaset": {GOGC: 50}}},
			"plugins.runtime.replicaset (--plugin-memory-limit, --plugin-gogc): replicaset runs in group g's process, whose runtime is one for all its members; set plugins.runtime.g instead"},
		{"star with nothing left", Plugins{Disable: []string{"*"}, Groups: PluginGroups{"g": {"*"}}}, `"*" leaves no enabled built-in plugin for the group`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.ValidatePlugins(builtins)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	ok := Plugins{Groups: PluginGroups{"g": {"replicaset"}}, Runtime: map[string]PluginRuntime{"g": {GOGC: 50}}}
	if err := ok.ValidatePlugins(builtins); err != nil {
		t.Errorf("a group's own runtime entry refused: %v", err)
	}
}
