package nodeipam

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/keelson/keelson/plugins/sdk"
)

// Config is the plugin's section of the server configuration
// (plugins.config.nodeipam). The server fills in clusterCIDR and
// serviceCIDR from its own --cluster-cidr and --service-cidr unless the
// section sets them.
type Config struct {
	// ClusterCIDR is the pod range: one CIDR, or an IPv4 and an IPv6 CIDR
	// separated by a comma (dual-stack: every node gets one range of each).
	// Default 10.42.0.0/16.
	ClusterCIDR string `json:"clusterCIDR"`
	// NodeCIDRMaskSize is the prefix length of each node's IPv4 range.
	// Default 24 (254 pods per node).
	NodeCIDRMaskSize int `json:"nodeCIDRMaskSize"`
	// NodeCIDRMaskSizeIPv6 is the prefix length of each node's IPv6 range.
	// Default 64.
	NodeCIDRMaskSizeIPv6 int `json:"nodeCIDRMaskSizeIPv6"`
	// ServiceCIDR, when it overlaps the pod range, is kept out of it (one
	// CIDR or two separated by a comma). Optional.
	ServiceCIDR string `json:"serviceCIDR"`
}

// DefaultConfig is the configuration with nothing set.
func DefaultConfig() Config {
	return Config{ClusterCIDR: "10.42.0.0/16", NodeCIDRMaskSize: 24, NodeCIDRMaskSizeIPv6: 64}
}

// ranges is a validated configuration: the cluster ranges in the order of
// a node's podCIDRs, each with its node mask, and the ranges kept out.
type ranges struct {
	cluster  []netip.Prefix
	masks    []int
	reserved []netip.Prefix
}

// parseConfig decodes raw over the defaults, strictly (an unknown key is an
// error naming it), and validates it; every error names its field.
func parseConfig(raw json.RawMessage) (Config, ranges, error) {
	cfg := DefaultConfig()
	if err := sdk.DecodeConfig(raw, &cfg); err != nil {
		return cfg, ranges{}, fmt.Errorf("plugins.config.nodeipam: %w", err)
	}
	r, err := cfg.validate()
	return cfg, r, err
}

func (c Config) validate() (ranges, error) {
	var r ranges
	var errs []error
	cluster, err := parseCIDRs(c.ClusterCIDR)
	if err != nil {
		errs = append(errs, fmt.Errorf("clusterCIDR: %w", err))
	}
	if c.NodeCIDRMaskSize < 1 || c.NodeCIDRMaskSize > 30 {
		errs = append(errs, fmt.Errorf("nodeCIDRMaskSize: %d must be between 1 and 30 (24 gives each node 254 pod IPs)", c.NodeCIDRMaskSize))
	}
	if c.NodeCIDRMaskSizeIPv6 < 1 || c.NodeCIDRMaskSizeIPv6 > 126 {
		errs = append(errs, fmt.Errorf("nodeCIDRMaskSizeIPv6: %d must be between 1 and 126 (default 64)", c.NodeCIDRMaskSizeIPv6))
	}
	if c.ServiceCIDR != "" {
		if r.reserved, err = parseCIDRs(c.ServiceCIDR); err != nil {
			errs = append(errs, fmt.Errorf("serviceCIDR: %w", err))
		}
	}
	if len(errs) == 0 {
		for _, p := range cluster {
			field, mask := "nodeCIDRMaskSize", c.NodeCIDRMaskSize
			if p.Addr().Is6() {
				field, mask = "nodeCIDRMaskSizeIPv6", c.NodeCIDRMaskSizeIPv6
			}
			if _, err := newCIDRSet(p, mask); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", field, err))
			}
			r.cluster, r.masks = append(r.cluster, p), append(r.masks, mask)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ranges{}, fmt.Errorf("plugins.config.nodeipam: %w", err)
	}
	return r, nil
}

// parseCIDRs reads one CIDR, or one per IP family separated by a comma.
func parseCIDRs(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("must not be empty")
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil || p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q is not a CIDR such as 10.42.0.0/16", strings.TrimSpace(part))
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("%q has host bits set; use %s", p, p.Masked())
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Errorf("%q has two CIDRs of one IP family; give at most one IPv4 and one IPv6 CIDR", s)
			}
		}
		out = append(out, p)
	}
	return out, nil
}
