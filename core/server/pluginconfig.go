package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/keelson/keelson/config"
)

// derivedPluginConfig is what built-in plugins learn from the server's own
// configuration, by plugin name and key of the plugin's section. The
// operator's section wins key by key (see withDefaults).
func derivedPluginConfig(cfg config.Server) map[string]map[string]any {
	derived := map[string]map[string]any{
		// The pod range is a cluster setting (--cluster-cidr), as is the
		// service range the allocator keeps out of it.
		"nodeipam": {"clusterCIDR": cfg.ClusterCIDR, "serviceCIDR": cfg.APIServer.ServiceCIDR},
		// Nodes outside the gossip pool (Lease heartbeats) get the same grace
		// period as gossip nodes.
		"nodelifecycle": {"nodeMonitorGracePeriod": cfg.NodeMonitorGracePeriod.Duration.String()},
		// The metrics API listens where the server does and is reached
		// where the server is.
		"metricsserver": {"bindAddress": cfg.BindAddress, "advertiseAddress": cfg.AdvertiseIP()},
	}
	// The built-in cloud provider's address pools (validated against the
	// service and pod ranges with the rest of the configuration).
	if len(cfg.LoadBalancer.Pools) > 0 {
		derived["localcloud"] = map[string]any{"pools": cfg.LoadBalancer.Pools}
	}
	return derived
}

// withDefaults adds each of defaults' keys that section (a JSON object,
// possibly empty) does not set.
func withDefaults(section json.RawMessage, defaults map[string]any) (json.RawMessage, error) {
	if len(defaults) == 0 {
		return section, nil
	}
	merged := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(section)) > 0 {
		if err := json.Unmarshal(section, &merged); err != nil {
			return nil, errors.New("must be a JSON object")
		}
	}
	for k, v := range defaults {
		if _, set := merged[k]; set {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encoding the server's %s: %w", k, err)
		}
		merged[k] = b
	}
	return json.Marshal(merged)
}
