package servicenet

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/agent/proxy"
)

// Config configures a node's service networking. Every field maps to an
// agent flag (in brackets).
type Config struct {
	// NodeName is this node's Node name. Required.
	NodeName string
	// ClusterCIDRs are the pods' address ranges of the cluster, at most
	// one per family [--cluster-cidr]. Traffic between them is never
	// NATed; from them to elsewhere it is masqueraded (unless
	// NoPodMasquerade); traffic from outside them to cluster IPs is
	// masqueraded. The families of these ranges are the families served.
	ClusterCIDRs []netip.Prefix
	// ClusterDNS are the cluster DNS addresses pods' resolv.conf names
	// [--cluster-dns]. The node holds them (on DNSLink) and serves DNS on
	// them; empty disables cluster DNS on this node.
	ClusterDNS []netip.Addr
	// ClusterDomain is the cluster's DNS domain [--cluster-domain]
	// (default cluster.local).
	ClusterDomain string
	// ResolvConf is the node's resolver file, for names outside the
	// cluster domain [--resolv-conf] (default /etc/resolv.conf).
	ResolvConf string
	// NodePortAddresses limits node ports to local addresses in these
	// ranges [--nodeport-addresses]; empty: every non-loopback address.
	NodePortAddresses []netip.Prefix
	// MasqueradeAll masquerades all traffic to cluster IPs
	// [--masquerade-all].
	MasqueradeAll bool
	// NoPodMasquerade leaves traffic from pods to outside the cluster
	// CIDRs with the pods' addresses (for networks that route pod CIDRs).
	NoPodMasquerade bool
	// DisableNetworkPolicy turns enforcement off (for clusters whose
	// network plugin enforces policies).
	DisableNetworkPolicy bool
	// KeepRulesOnShutdown leaves rules, routes and the DNS address in
	// place when Run returns, so that pods keep working while the agent
	// restarts; by default Run removes them ("keelson agent --cleanup"
	// always does).
	KeepRulesOnShutdown bool
	// Metrics, when set, registers the proxy's and DNS server's metrics
	// (kube-proxy's and CoreDNS's names); nil: not exported.
	Metrics prometheus.Registerer
	// ProxyMode is the service proxy's mode [--proxy-mode]: proxy.ModeNFTables
	// or proxy.ModeIPTables; empty: nftables where the kernel supports it
	// (proxy.ResolveMode).
	ProxyMode string
	// DNSLink is the device that holds the cluster DNS addresses as /32s
	// (default "lo": an address there is local to the node and reached by
	// its pods through their gateway, so every node answers its own pods).
	DNSLink string
	// MinSyncPeriod and SyncPeriod bound how often rules and routes are
	// synced (defaults 1s and 1m).
	MinSyncPeriod, SyncPeriod time.Duration
}

// ApplyDefaults fills zero fields.
func (c *Config) ApplyDefaults() {
	if c.ClusterDomain == "" {
		c.ClusterDomain = "cluster.local"
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.DNSLink == "" {
		c.DNSLink = "lo"
	}
	if c.MinSyncPeriod == 0 {
		c.MinSyncPeriod = time.Second
	}
	if c.SyncPeriod == 0 {
		c.SyncPeriod = time.Minute
	}
}

// Validate checks the configuration and names the field at fault.
func (c *Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("network: nodeName is empty; set the node's name"))
	}
	if len(c.ClusterCIDRs) == 0 {
		errs = append(errs, errors.New("network: clusterCIDRs is empty; set --cluster-cidr to the pods' address range (e.g. 10.244.0.0/16)"))
	}
	seen := map[v1.IPFamily]bool{}
	for _, p := range c.ClusterCIDRs {
		f := familyOf(p.Addr())
		if seen[f] {
			errs = append(errs, fmt.Errorf("network: clusterCIDRs has two %s ranges (%v); give one per family", f, c.ClusterCIDRs))
		}
		seen[f] = true
	}
	for _, a := range c.ClusterDNS {
		if !seen[familyOf(a)] {
			errs = append(errs, fmt.Errorf("network: clusterDNS %s has no cluster CIDR of its family", a))
		}
	}
	if strings.Trim(c.ClusterDomain, ".") == "" {
		errs = append(errs, errors.New("network: clusterDomain is empty; use e.g. cluster.local"))
	}
	if c.ProxyMode != "" && c.ProxyMode != proxy.ModeIPTables && c.ProxyMode != proxy.ModeNFTables {
		errs = append(errs, fmt.Errorf("network: proxyMode %q is unknown; use %s, %s, or nothing for nftables where the kernel supports it", c.ProxyMode, proxy.ModeNFTables, proxy.ModeIPTables))
	}
	if c.SyncPeriod < c.MinSyncPeriod {
		errs = append(errs, fmt.Errorf("network: syncPeriod %s must be at least minSyncPeriod %s", c.SyncPeriod, c.MinSyncPeriod))
	}
	return errors.Join(errs...)
}

// Families are the IP families served: those of the cluster CIDRs.
func (c *Config) Families() []v1.IPFamily {
	var out []v1.IPFamily
	for _, p := range c.ClusterCIDRs {
		out = append(out, familyOf(p.Addr()))
	}
	return out
}

func familyOf(a netip.Addr) v1.IPFamily {
	if a.Unmap().Is4() {
		return v1.IPv4Protocol
	}
	return v1.IPv6Protocol
}

// metricsRegisterer is Metrics, or a registry nobody reads.
func (c Config) metricsRegisterer() prometheus.Registerer {
	if c.Metrics == nil {
		return prometheus.NewRegistry()
	}
	return c.Metrics
}
