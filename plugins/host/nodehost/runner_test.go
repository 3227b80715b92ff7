package nodehost

import (
	"strings"
	"testing"

	"github.com/keelson/keelson/plugins/host"
)

func TestSelectFor(t *testing.T) {
	decls := []host.NodePlugin{
		{Name: "announcer", Builtin: true},
		{Name: "edge-proxy", File: "edge-proxy", SHA256: strings.Repeat("ab", 32), NodeSelector: map[string]string{"edge": "true"}},
		{Name: "bad", File: "../etc/passwd", SHA256: strings.Repeat("ab", 32)},
	}
	tests := []struct {
		name    string
		labels  map[string]string
		run     []string
		skipped []string
	}{
		{"plain node", map[string]string{"kubernetes.io/hostname": "a1"}, []string{"announcer"}, []string{"edge-proxy"}},
		{"edge node", map[string]string{"edge": "true"}, []string{"announcer", "edge-proxy"}, nil},
		{"selector value differs", map[string]string{"edge": "false"}, []string{"announcer"}, []string{"edge-proxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			builtins := host.BuiltinBinary{Path: "/var/lib/keelson/bin/abab/keelson-plugins", SHA256: strings.Repeat("cd", 32)}
			sel := selectFor(decls, tt.labels, builtins, "/var/lib/keelson/plugins")
			var run []string
			for _, sp := range sel.specs {
				run = append(run, sp.Name)
				if sp.Name == "edge-proxy" && (sp.Path != "/var/lib/keelson/plugins/edge-proxy" || sp.SHA256 == "" || sp.Builtin) {
					t.Errorf("edge-proxy spec %+v: want the file in the agent's plugin dir, pinned by its checksum", sp)
				}
				if sp.Name == "announcer" && (!sp.Builtin || sp.Path != builtins.Path || len(sp.Args) != 1 || sp.Args[0] != "announcer" || sp.SHA256 != builtins.SHA256) {
					t.Errorf("announcer spec %+v: want `%s announcer` pinned to its checksum", sp, builtins.Path)
				}
			}
			if strings.Join(run, ",") != strings.Join(tt.run, ",") {
				t.Errorf("runs %v; want %v", run, tt.run)
			}
			for _, s := range tt.skipped {
				if sel.skipped[s] == "" {
					t.Errorf("%s not reported as skipped: %v", s, sel.skipped)
				}
			}
			if !strings.Contains(sel.refused["bad"], "plugin dir") {
				t.Errorf("a declaration naming a path outside the plugin dir: refused %q; want a refusal naming the plugin dir", sel.refused["bad"])
			}
		})
	}
}

func TestDeclarationsRoundTrip(t *testing.T) {
	in := []host.NodePlugin{{Name: "b", Builtin: true}, {Name: "a", File: "a", SHA256: "x", NodeSelector: map[string]string{"k": "v"}}}
	s, err := host.EncodeNodePlugins(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := host.DecodeNodePlugins(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Name != "a" || out[1].Name != "b" || out[0].NodeSelector["k"] != "v" {
		t.Errorf("round trip gave %+v; want both, sorted by name", out)
	}
	if _, err := host.DecodeNodePlugins("{"); err == nil || !strings.Contains(err.Error(), host.NodePluginsConfigMap) {
		t.Errorf("a corrupt value: %v; want an error naming the ConfigMap", err)
	}
}
