package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestPluginRuntimeFromFileAndFlags(t *testing.T) {
	file := writeFile(t, `
plugins:
  runtime:
    "*": {memoryLimit: 256Mi, gogc: 80}
    scheduler: {memoryLimit: 1Gi}
    podgc: {gogc: 50}
`)
	cfg, err := LoadServer(file, parse(t, "--plugin-gogc", "scheduler=120", "--plugin-memory-limit", "podgc=64Mi"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plugins
	if err := p.ValidatePlugins([]string{"scheduler", "podgc", "replicaset"}); err != nil {
		t.Fatalf("valid runtime settings refused: %v", err)
	}
	for _, tt := range []struct {
		plugin string
		want   []string
	}{
		{"scheduler", []string{"GOMEMLIMIT=1073741824", "GOGC=120"}}, // the file's limit, the flag's GOGC
		{"podgc", []string{"GOMEMLIMIT=67108864", "GOGC=50"}},
		{"replicaset", []string{"GOMEMLIMIT=268435456", "GOGC=80"}}, // "*" only
	} {
		if got := p.PluginRuntimeFor(tt.plugin).Env(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: env %v; want %v", tt.plugin, got, tt.want)
		}
	}
	def := DefaultServer()
	if env := def.Plugins.PluginRuntimeFor("scheduler").Env(); len(env) != 0 {
		t.Errorf("default configuration sets %v; want Go's own defaults (no variables)", env)
	}
	off := PluginRuntime{MemoryLimit: "512Mi", GOGC: -1}
	if got := off.Env(); !slices.Equal(got, []string{"GOMEMLIMIT=536870912", "GOGC=off"}) {
		t.Errorf("gogc -1: env %v", got)
	}
}

func TestPluginRuntimeValidation(t *testing.T) {
	builtins := []string{"scheduler", "podgc"}
	for _, tt := range []struct {
		name    string
		runtime map[string]PluginRuntime
		want    string
	}{
		{"not a quantity", map[string]PluginRuntime{"podgc": {MemoryLimit: "lots"}},
			`plugins.runtime.podgc.memoryLimit (--plugin-memory-limit): "lots" is not a quantity`},
		{"too small", map[string]PluginRuntime{"*": {MemoryLimit: "4Mi"}},
			"plugins.runtime.*.memoryLimit (--plugin-memory-limit): 4Mi is below 16Mi"},
		{"negative gogc", map[string]PluginRuntime{"scheduler": {GOGC: -5}},
			"plugins.runtime.scheduler.gogc (--plugin-gogc): -5 is not a percentage"},
		{"off without limit", map[string]PluginRuntime{"scheduler": {GOGC: -1}},
			"plugins.runtime.scheduler.gogc (--plugin-gogc): -1 (off) needs a memoryLimit"},
		{"unknown plugin", map[string]PluginRuntime{"shceduler": {GOGC: 50}},
			`plugins.runtime.shceduler: no built-in or external plugin is called "shceduler"`},
		// The "*" entry's bad limit is reported where it applies, too.
		{"inherited bad limit", map[string]PluginRuntime{"*": {MemoryLimit: "1Ki"}, "podgc": {GOGC: 50}},
			"plugins.runtime.podgc.memoryLimit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := Plugins{Runtime: tt.runtime}
			err := p.ValidatePlugins(builtins)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want one containing %q", err, tt.want)
			}
		})
	}
	ok := Plugins{Runtime: map[string]PluginRuntime{"*": {MemoryLimit: "16Mi"}, "scheduler": {GOGC: -1}}}
	if err := ok.ValidatePlugins(builtins); err != nil {
		t.Errorf("gogc off with the \"*\" memory limit refused: %v", err)
	}
}

func TestPluginRuntimeFlagsRefuseBadValues(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--plugin-gogc", "scheduler=fifty"}, `"fifty" is not a whole number`},
		{[]string{"--plugin-gogc", "scheduler"}, "is not NAME=VALUE"},
		{[]string{"--plugin-memory-limit", "=64Mi"}, "is not NAME=VALUE"},
	} {
		c := DefaultServer()
		set := pflag.NewFlagSet("test", pflag.ContinueOnError)
		ServerFlags(set, &c)
		if err := set.Parse(tt.args); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v; want one containing %q", tt.args, err, tt.want)
		}
	}
}
