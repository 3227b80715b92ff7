package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/plugins/host"
)

func TestNodePluginDecls(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	cfg := config.Server{Plugins: config.Plugins{
		NodeSelector: map[string]map[string]string{"announcer": {"lb": "yes"}},
		Config:       map[string]json.RawMessage{"announcer": json.RawMessage(`{"healthCheckBindAddress":"0.0.0.0"}`)},
		External: []config.ExternalPlugin{
			{Name: "leader-only", SHA256: sum, Preset: "read-only"},
			{Name: "edge", File: "edge-bin", SHA256: sum, Scope: config.ScopeNode, NodeSelector: map[string]string{"edge": "true"}},
			{Name: "product", SHA256: sum, Scope: config.ScopeBoth, Preset: "read-only"},
		},
	}}
	decls, err := nodePluginDecls(cfg, []string{"announcer"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range decls {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "announcer,edge,product" {
		t.Fatalf("declared %v; want the built-in and the node and both scoped externals", names)
	}
	var section map[string]any
	if err := json.Unmarshal(decls[0].Config, &section); err != nil {
		t.Fatal(err)
	}
	if section["healthCheckBindAddress"] != "0.0.0.0" || section["nodeSelector"].(map[string]any)["lb"] != "yes" {
		t.Errorf("the announcer's section %s: want the operator's keys and its node selector", decls[0].Config)
	}
	if d := decls[1]; d.File != "edge-bin" || d.SHA256 != sum || d.NodeSelector["edge"] != "true" || d.Builtin {
		t.Errorf("edge declared as %+v", d)
	}
	specs, err := pluginSpecs(cfg, host.BuiltinBinary{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var leader []string
	for _, sp := range specs {
		leader = append(leader, sp.Name)
	}
	if strings.Join(leader, ",") != "leader-only,product" {
		t.Errorf("the leader runs %v; want leader-only and product (scope both), never the node-only one", leader)
	}
	cfg.Plugins.Disable = []string{"announcer"}
	if decls, _ := nodePluginDecls(cfg, []string{"announcer"}); len(decls) != 2 {
		t.Errorf("a disabled built-in node plugin is still declared: %+v", decls)
	}
}

func TestPublishNodePlugins(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientset()
	decls := []host.NodePlugin{{Name: "announcer", Builtin: true}}
	for i := 0; i < 2; i++ { // the second call finds it up to date
		if err := publishNodePlugins(ctx, c, decls); err != nil {
			t.Fatal(err)
		}
	}
	if err := publishNodePlugins(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	cm, err := c.CoreV1().ConfigMaps(host.NodePluginsNamespace).Get(ctx, host.NodePluginsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := host.DecodeNodePlugins(cm.Data[host.NodePluginsKey])
	if err != nil || len(got) != 0 {
		t.Errorf("after removing every node plugin the agents read %v (%v); want none", got, err)
	}
}
