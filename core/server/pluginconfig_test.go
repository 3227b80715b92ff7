package server

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/plugins/host"
)

// testBuiltins stands for the extracted keelson-plugins executable.
var testBuiltins = host.BuiltinBinary{Path: "/data/bin/cdcd/keelson-plugins", SHA256: strings.Repeat("cd", 32)}

func TestPluginSectionsGetServerDefaults(t *testing.T) {
	cfg := config.DefaultServer()
	cfg.NodeName = "s1"
	cfg.ClusterCIDR = "10.50.0.0/16"
	cfg.Plugins.Config = map[string]json.RawMessage{
		"nodeipam":      json.RawMessage(`{"clusterCIDR":"10.60.0.0/16","nodeCIDRMaskSize":26}`),
		"nodelifecycle": json.RawMessage(`{"nodeEvictionRate":0.5}`),
	}
	specs, err := pluginSpecs(cfg, testBuiltins, []string{"nodeipam", "nodelifecycle", "other"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, sp := range specs {
		if !sp.Builtin || sp.Path != testBuiltins.Path || !slices.Equal(sp.Args, []string{sp.Name}) || sp.SHA256 != testBuiltins.SHA256 {
			t.Errorf("%s: runs %s %v (builtin %v, sha256 %q); want %s %s pinned to %s", sp.Name, sp.Path, sp.Args, sp.Builtin, sp.SHA256,
				testBuiltins.Path, sp.Name, testBuiltins.SHA256)
		}
		m := map[string]any{}
		if len(sp.Config) > 0 {
			if err := json.Unmarshal(sp.Config, &m); err != nil {
				t.Fatalf("%s: %v", sp.Name, err)
			}
		}
		got[sp.Name] = m
	}
	if got["nodeipam"]["clusterCIDR"] != "10.60.0.0/16" || got["nodeipam"]["nodeCIDRMaskSize"] != 26.0 ||
		got["nodeipam"]["serviceCIDR"] != "10.43.0.0/16" {
		t.Errorf("nodeipam section %v: the operator's keys win, the server fills in the rest", got["nodeipam"])
	}
	if got["nodelifecycle"]["nodeMonitorGracePeriod"] != "40s" || got["nodelifecycle"]["nodeEvictionRate"] != 0.5 {
		t.Errorf("nodelifecycle section %v", got["nodelifecycle"])
	}
	if len(got["other"]) != 0 {
		t.Errorf("a plugin without server defaults got %v", got["other"])
	}

	cfg.Plugins.Config = map[string]json.RawMessage{"nodeipam": json.RawMessage(`[1]`)}
	if _, err := pluginSpecs(cfg, testBuiltins, []string{"nodeipam"}); err == nil {
		t.Error("a nodeipam section that is not an object was accepted")
	}
}

// TestWithinApproval: a third-party plugin's declared rules must be covered
// by the approved ones; a rule beyond them (a verb, a resource, escalate via
// RBAC) is named in the refusal.
func TestWithinApproval(t *testing.T) {
	approved := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
	}
	within := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "namespaces"}, Verbs: []string{"list", "watch"}}}
	if err := withinApproval("p", approvedByConfig, approved, within); err != nil {
		t.Errorf("covered rules refused: %v", err)
	}
	for _, tc := range []struct {
		declared rbacv1.PolicyRule
		want     string
	}{
		{rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"delete"}}, "configmaps verbs=[delete]"},
		{rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}, "secrets verbs=[get]"},
		{rbacv1.PolicyRule{APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, Verbs: []string{"escalate"}}, "clusterroles.rbac.authorization.k8s.io verbs=[escalate]"},
		{rbacv1.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}, "verbs=[*]"},
	} {
		err := withinApproval("p", approvedByConfig, approved, append(within, tc.declared))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "plugin p declares API permissions beyond") {
			t.Errorf("declared %v: %v, want a refusal naming %q", tc.declared, err, tc.want)
		}
	}
}

// A group is one process of the embedded executable serving its members;
// its runtime knobs are the group's entry.
func TestPluginGroupsLaunchOneProcessEach(t *testing.T) {
	cfg := config.DefaultServer()
	cfg.Plugins.Groups = config.PluginGroups{"small": {"deployment", "replicaset"}}
	cfg.Plugins.Runtime = map[string]config.PluginRuntime{"small": {GOGC: 50}}
	groups := pluginGroups(cfg, testBuiltins, []string{"replicaset", "deployment", "scheduler"})
	if len(groups) != 1 {
		t.Fatalf("groups %+v, want one", groups)
	}
	g := groups[0]
	if g.Name != "small" || !slices.Equal(g.Members, []string{"replicaset", "deployment"}) {
		t.Errorf("group %s with members %v, want small with replicaset, deployment (in start order)", g.Name, g.Members)
	}
	sp := g.Process
	if sp.Path != testBuiltins.Path || sp.SHA256 != testBuiltins.SHA256 || !sp.Builtin ||
		!slices.Equal(sp.Args, []string{"group", "small", "replicaset", "deployment"}) || !slices.Contains(sp.Env, "GOGC=50") {
		t.Errorf("group process spec %+v", sp)
	}
	if got := pluginGroups(config.DefaultServer(), testBuiltins, []string{"replicaset"}); len(got) != 0 {
		t.Errorf("default configuration has groups %+v", got)
	}
}
