package server

import (
	"encoding/json"
	"testing"

	"github.com/keelson/keelson/config"
)

func TestPluginSectionsGetServerDefaults(t *testing.T) {
	cfg := config.DefaultServer()
	cfg.NodeName = "s1"
	cfg.ClusterCIDR = "10.50.0.0/16"
	cfg.Plugins.Config = map[string]json.RawMessage{
		"nodeipam":      json.RawMessage(`{"clusterCIDR":"10.60.0.0/16","nodeCIDRMaskSize":26}`),
		"nodelifecycle": json.RawMessage(`{"nodeEvictionRate":0.5}`),
	}
	specs, err := pluginSpecs(cfg, []string{"nodeipam", "nodelifecycle", "other"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]any{}
	for _, sp := range specs {
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
	if _, err := pluginSpecs(cfg, []string{"nodeipam"}); err == nil {
		t.Error("a nodeipam section that is not an object was accepted")
	}
}
