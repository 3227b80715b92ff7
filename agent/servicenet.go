package agent

import (
	"fmt"
	"net/netip"

	"github.com/keelson/keelson/agent/servicenet"
	"github.com/keelson/keelson/config"
)

// ClusterDNS is what ClusterFirst pods get as nameservers: the configured
// addresses, else the default cluster DNS address this node serves, else
// (no service network) none, and pods inherit the node's resolv.conf.
func ClusterDNS(cfg config.Agent) []string {
	if len(cfg.Kubelet.ClusterDNS) > 0 || cfg.Network.DisableServiceNetwork {
		return cfg.Kubelet.ClusterDNS
	}
	return []string{config.DefaultClusterDNS}
}

// podMasquerade says whether the CNI bridge masquerades pod traffic: only
// without the service network, which masquerades traffic leaving the
// whole cluster range instead (the bridge's rule would NAT traffic to
// other nodes' pods too).
func podMasquerade(cfg config.Agent) bool {
	return cfg.Network.Masquerade && cfg.Network.DisableServiceNetwork
}

// NetworkConfig is the service network configuration of an agent: its
// proxy, cluster DNS, NetworkPolicy enforcement and routes to other nodes'
// pods (agent/servicenet). `keelson agent --cleanup` removes what it installs.
func NetworkConfig(cfg config.Agent) (servicenet.Config, error) {
	cidrs, err := config.ParseClusterCIDRs(cfg.ClusterCIDR)
	if err != nil {
		return servicenet.Config{}, fmt.Errorf("clusterCIDR (--cluster-cidr): %w", err)
	}
	nc := servicenet.Config{
		NodeName:             cfg.NodeName,
		ClusterCIDRs:         cidrs,
		ClusterDomain:        cfg.ClusterDomain,
		ResolvConf:           cfg.Kubelet.ResolvConf,
		NoPodMasquerade:      !cfg.Network.Masquerade,
		DisableNetworkPolicy: cfg.Network.DisableNetworkPolicy,
		KeepRulesOnShutdown:  cfg.Network.KeepRulesOnShutdown,
		ProxyMode:            cfg.Network.ProxyMode,
	}
	for _, s := range ClusterDNS(cfg) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return servicenet.Config{}, fmt.Errorf("kubelet.clusterDNS (--cluster-dns): %q is not an IP address", s)
		}
		nc.ClusterDNS = append(nc.ClusterDNS, a)
	}
	for _, s := range cfg.Network.NodePortAddresses {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return servicenet.Config{}, fmt.Errorf("network.nodePortAddresses (--nodeport-addresses): %q is not a CIDR", s)
		}
		nc.NodePortAddresses = append(nc.NodePortAddresses, p)
	}
	nc.ApplyDefaults()
	if err := nc.Validate(); err != nil {
		return servicenet.Config{}, err
	}
	return nc, nil
}
