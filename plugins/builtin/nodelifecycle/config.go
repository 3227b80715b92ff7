package nodelifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keelson/keelson/plugins/sdk"
)

// Config is the plugin's section of the server configuration
// (plugins.config.nodelifecycle), with kube-controller-manager's flags of
// the same names and defaults. The server fills in nodeMonitorGracePeriod
// from its own --node-monitor-grace-period unless the section sets it.
type Config struct {
	// NodeMonitorPeriod is how often node health is checked and the zones'
	// states recomputed. Default 5s.
	NodeMonitorPeriod Duration `json:"nodeMonitorPeriod"`
	// NodeMonitorGracePeriod is how long a node outside the gossip pool may
	// go without renewing its Lease or posting status before it is marked
	// Ready=Unknown. Default 40s.
	NodeMonitorGracePeriod Duration `json:"nodeMonitorGracePeriod"`
	// NodeStartupGracePeriod replaces the grace period for a node that has
	// never posted its status. Default 1m.
	NodeStartupGracePeriod Duration `json:"nodeStartupGracePeriod"`
	// NodeEvictionRate is how many nodes per second, per zone, get the
	// NoExecute taint (and so lose their pods) while the zone is healthy.
	// Default 0.1: one node every 10 seconds.
	NodeEvictionRate float64 `json:"nodeEvictionRate"`
	// SecondaryNodeEvictionRate replaces it in a partially disrupted zone
	// of a large cluster. Default 0.01.
	SecondaryNodeEvictionRate float64 `json:"secondaryNodeEvictionRate"`
	// UnhealthyZoneThreshold is the share of a zone's nodes (at least 3
	// nodes) that must be not ready for the zone to count as partially
	// disrupted. Default 0.55.
	UnhealthyZoneThreshold float64 `json:"unhealthyZoneThreshold"`
	// LargeClusterSizeThreshold is the zone size above which a partially
	// disrupted zone keeps evicting at the secondary rate; at or below it
	// evictions stop. Default 50.
	LargeClusterSizeThreshold int `json:"largeClusterSizeThreshold"`
}

// DefaultConfig is the configuration with nothing set: upstream's defaults
// (the grace period as documented before Kubernetes 1.32, which raised it
// to 50s).
func DefaultConfig() Config {
	return Config{
		NodeMonitorPeriod:         Duration{Duration: 5 * time.Second},
		NodeMonitorGracePeriod:    Duration{Duration: 40 * time.Second},
		NodeStartupGracePeriod:    Duration{Duration: time.Minute},
		NodeEvictionRate:          0.1,
		SecondaryNodeEvictionRate: 0.01,
		UnhealthyZoneThreshold:    0.55,
		LargeClusterSizeThreshold: 50,
	}
}

// parseConfig decodes raw over the defaults, strictly (an unknown key is an
// error naming it), and validates it; every error names its field.
func parseConfig(raw json.RawMessage) (Config, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("plugins.config.nodelifecycle: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return cfg, fmt.Errorf("plugins.config.nodelifecycle: %w", err)
	}
	return cfg, nil
}

func (c Config) validate() error {
	var errs []error
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"nodeMonitorPeriod", c.NodeMonitorPeriod},
		{"nodeMonitorGracePeriod", c.NodeMonitorGracePeriod},
		{"nodeStartupGracePeriod", c.NodeStartupGracePeriod},
	} {
		switch {
		case d.v.bad != "":
			errs = append(errs, fmt.Errorf("%s: %s is not a duration such as \"40s\"", d.field, d.v.bad))
		case d.v.Duration <= 0:
			errs = append(errs, fmt.Errorf("%s: %s must be positive", d.field, d.v.Duration))
		}
	}
	if c.NodeMonitorPeriod.Duration > 0 && c.NodeMonitorGracePeriod.Duration > 0 && c.NodeMonitorGracePeriod.Duration < c.NodeMonitorPeriod.Duration {
		errs = append(errs, fmt.Errorf("nodeMonitorGracePeriod: %s is shorter than nodeMonitorPeriod %s; a node would be marked Unknown between two checks", c.NodeMonitorGracePeriod.Duration, c.NodeMonitorPeriod.Duration))
	}
	for _, r := range []struct {
		field string
		v     float64
	}{{"nodeEvictionRate", c.NodeEvictionRate}, {"secondaryNodeEvictionRate", c.SecondaryNodeEvictionRate}} {
		if r.v < 0 {
			errs = append(errs, fmt.Errorf("%s: %g must not be negative (0 stops evictions)", r.field, r.v))
		}
	}
	if c.UnhealthyZoneThreshold <= 0 || c.UnhealthyZoneThreshold > 1 {
		errs = append(errs, fmt.Errorf("unhealthyZoneThreshold: %g must be in (0, 1], a share of the zone's nodes", c.UnhealthyZoneThreshold))
	}
	if c.LargeClusterSizeThreshold < 0 {
		errs = append(errs, fmt.Errorf("largeClusterSizeThreshold: %d must not be negative", c.LargeClusterSizeThreshold))
	}
	return errors.Join(errs...)
}

// Duration is a time.Duration written as a Go duration string ("40s").
type Duration struct {
	time.Duration
	// bad keeps a value that is not a duration, for validate to report
	// with the field's name (the decoder does not know it).
	bad string
}

// UnmarshalJSON reads a duration string such as "40s" or "1m30s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		d.bad = string(b)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.bad = s
		return nil
	}
	d.Duration, d.bad = v, ""
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }
