package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// AgentFlags registers every Agent field as a flag bound to c. Call it with c
// set to DefaultAgent() so --help shows the defaults.
func AgentFlags(fs *pflag.FlagSet, c *Agent) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the agent's state (DATA_DIR/agent) and image tarballs to import (DATA_DIR/images)")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "name of this node")
	fs.StringVar(&c.Server, "server", c.Server, "URL of a server's Kubernetes API, https://ADDR:6443")
	fs.StringVar(&c.Token, "token", c.Token, "agent token from a server's DATA_DIR/agent-token (prefer --token-file: flags show in ps)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the agent token (a copy of a server's DATA_DIR/agent-token)")
	fs.IntVar(&c.SupervisorPort, "supervisor-port", c.SupervisorPort, "the servers' supervisor port, which issues node credentials")
	fs.IntVar(&c.SerfPort, "serf-port", c.SerfPort, "gossip port of this agent (0: a free one)")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "DNS domain of the cluster")
	fs.StringVar(&c.ClusterCIDR, "cluster-cidr", c.ClusterCIDR, "the cluster's pod range, as the servers' --cluster-cidr (traffic inside it is not NATed)")
	fs.DurationVar(&c.Gossip.ProbeInterval.Duration, "gossip-probe-interval", c.Gossip.ProbeInterval.Duration, "how often this agent probes a random gossip member")
	fs.DurationVar(&c.Gossip.ProbeTimeout.Duration, "gossip-probe-timeout", c.Gossip.ProbeTimeout.Duration, "how long a gossip probe waits for its ack before indirect probes (at most --gossip-probe-interval)")
	fs.IntVar(&c.Gossip.SuspicionMult, "gossip-suspicion-mult", c.Gossip.SuspicionMult, "how many probe intervals (at least) a suspected member has to refute before this agent declares it failed")
	fs.StringVar(&c.PluginDirectory, "plugin-dir", c.PluginDirectory, "directory of third-party node plugin executables (default DATA_DIR/plugins)")
	fs.StringVar(&c.DebugListen, "debug-listen", c.DebugListen, "serve Go pprof profiles of the agent on this host:port (keep it on loopback)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "log level: debug, info, warn or error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log format: text or json")
	NodeFlags(fs, &c.Node)
}

// NodeFlags registers the node-local fields, which `keelson server` shares
// for its embedded agent. No name collides with a server flag.
func NodeFlags(fs *pflag.FlagSet, n *Node) {
	fs.StringVar(&n.NodeIP, "node-ip", n.NodeIP, "InternalIP of this node (default: the address used to reach the server)")
	fs.StringSliceVar(&n.NodeExternalIPs, "node-external-ip", n.NodeExternalIPs, "ExternalIP address of this node, reported in its Node's addresses (repeatable)")
	fs.StringVar(&n.CloudProvider, "cloud-provider", n.CloudProvider, "\"external\": register the Node with the node.cloudprovider.kubernetes.io/uninitialized taint for a cloud-provider plugin to initialise, as kubelet does")
	fs.StringToStringVar(&n.NodeLabels, "node-label", n.NodeLabels, "label added to the Node as key=value (repeatable)")
	fs.StringVar(&n.StorageDir, "storage-dir", n.StorageDir, "directory of the local-path volumes on this node (default: DATA_DIR/storage)")
	k := &n.Kubelet
	fs.StringVar(&k.Address, "kubelet-address", k.Address, "IP address the kubelet API listens on")
	fs.IntVar(&k.Port, "kubelet-port", k.Port, "HTTPS port of the kubelet API (logs, exec, port-forward)")
	fs.IntVar(&k.MaxPods, "max-pods", k.MaxPods, "pods this node accepts")
	fs.StringSliceVar(&k.ClusterDNS, "cluster-dns", k.ClusterDNS, "nameserver of ClusterFirst pods, served by this node (repeatable; default: "+DefaultClusterDNS+", or the node's resolv.conf with --disable-service-network)")
	fs.StringVar(&k.ResolvConf, "resolv-conf", k.ResolvConf, "resolver file Default pods inherit")
	fs.StringToStringVar(&k.SystemReserved, "system-reserved", k.SystemReserved, "resources held back from allocatable, e.g. cpu=100m,memory=256Mi")
	fs.StringToStringVar(&k.EvictionHard, "eviction-hard", k.EvictionHard, "pressure thresholds, e.g. memory.available=100Mi,nodefs.available=10%,pid.available=5%")
	fs.StringVar(&k.ContainerLogMaxSize, "container-log-max-size", k.ContainerLogMaxSize, "size at which a container log file is rotated")
	fs.IntVar(&k.ContainerLogMaxFiles, "container-log-max-files", k.ContainerLogMaxFiles, "log files kept per container, the current one included")
	fs.StringVar(&k.CgroupRoot, "cgroup-root", k.CgroupRoot, "cgroup under which pods' cgroups are created")
	fs.StringVar(&k.SeccompProfileRoot, "seccomp-profile-root", k.SeccompProfileRoot, "directory of the seccomp profiles pods name with type Localhost (default: DATA_DIR/agent/seccomp)")
	fs.BoolVar(&k.SeccompDefault, "seccomp-default", k.SeccompDefault, "confine containers that name no seccomp profile with the runtime's default profile")
	fs.StringSliceVar(&k.AllowedUnsafeSysctls, "allowed-unsafe-sysctls", k.AllowedUnsafeSysctls, "unsafe sysctls or patterns ending in * that pods may set, e.g. 'kernel.msg*,net.core.somaxconn' (namespaced sysctls only)")
	fs.DurationVar(&k.SyncFrequency.Duration, "sync-frequency", k.SyncFrequency.Duration, "how often every pod is re-synced (refreshes configMap, secret and token volumes)")
	fs.DurationVar(&k.NodeLeaseDuration.Duration, "node-lease-duration", k.NodeLeaseDuration.Duration, "duration of the node's Lease, renewed every quarter of it")
	fs.DurationVar(&k.NodeStatusUpdateFrequency.Duration, "node-status-update-frequency", k.NodeStatusUpdateFrequency.Duration, "how often the node's status is measured (written only on change)")
	fs.StringVar(&n.Runtime.Containerd, "containerd", n.Runtime.Containerd, "socket of an existing containerd (default: run one under DATA_DIR/agent/containerd)")
	fs.StringVar(&n.Runtime.ContainerdBin, "containerd-bin", n.Runtime.ContainerdBin, "containerd binary to run")
	fs.StringVar(&n.Runtime.Snapshotter, "snapshotter", n.Runtime.Snapshotter, "containerd snapshotter for root filesystems")
	fs.StringVar(&n.Network.CNIBinDir, "cni-bin-dir", n.Network.CNIBinDir, "directory of the CNI plugins")
	fs.StringVar(&n.Network.Bridge, "cni-bridge", n.Network.Bridge, "Linux bridge pods are attached to")
	fs.IntVar(&n.Network.MTU, "cni-mtu", n.Network.MTU, "MTU of pods' interfaces (0: default)")
	fs.BoolVar(&n.Network.Masquerade, "cni-masquerade", n.Network.Masquerade, "SNAT pod traffic leaving the cluster's pod range")
	fs.BoolVar(&n.Network.DisableServiceNetwork, "disable-service-network", n.Network.DisableServiceNetwork, "run no service proxy, cluster DNS, NetworkPolicy enforcement nor routes to other nodes' pods here")
	fs.BoolVar(&n.Network.DisableNetworkPolicy, "disable-network-policy", n.Network.DisableNetworkPolicy, "do not enforce NetworkPolicies on this node")
	fs.BoolVar(&n.Network.KeepRulesOnShutdown, "keep-rules-on-shutdown", n.Network.KeepRulesOnShutdown, "leave the service network's rules, routes and DNS address in place when the agent stops (pods keep their services across a restart)")
	fs.StringVar(&n.Network.ProxyMode, "proxy-mode", n.Network.ProxyMode, "how the service proxy programs the kernel: nftables (one table with verdict maps, written over netlink) or iptables; empty: nftables where the kernel supports it, iptables otherwise")
	fs.StringSliceVar(&n.Network.NodePortAddresses, "nodeport-addresses", n.Network.NodePortAddresses, "serve node ports only on local addresses in these CIDRs (default: every non-loopback address)")
	fs.Var(&registryMirrorFlag{m: &n.Registries}, "registry-mirror", "mirror of a registry as HOST=URL, tried before HOST (repeatable)")
	fs.Var(&insecureRegistryFlag{m: &n.Registries}, "insecure-registry", "registry HOST reached over plain HTTP or unverified TLS (repeatable)")
}

// LoadAgent builds the effective agent configuration: defaults, then the
// YAML file at path (if any), then every flag set in fs. The result is
// validated.
func LoadAgent(base Agent, path string, fs *pflag.FlagSet) (Agent, error) {
	return load(base, path, fs, AgentFlags, (*Agent).Validate)
}

// LoadAgentUnvalidated reads the agent configuration like LoadAgent
// without validating it, for commands that need only part of it (such as
// `keelson agent --cleanup`, which needs no server nor token).
func LoadAgentUnvalidated(base Agent, path string, fs *pflag.FlagSet) (Agent, error) {
	return load(base, path, fs, AgentFlags, func(*Agent) error { return nil })
}

// registryMirrorFlag sets Registry.Mirrors from HOST=URL entries. Flags win
// over the file per host: the hosts named on the command line get exactly
// the mirrors given there.
type registryMirrorFlag struct {
	m       *map[string]Registry
	entries []string
}

func (f *registryMirrorFlag) String() string { return "[" + strings.Join(f.entries, ",") + "]" }
func (f *registryMirrorFlag) Type() string   { return "HOST=URL" }

func (f *registryMirrorFlag) Set(v string) error {
	for _, e := range strings.Split(v, ",") {
		if err := f.Append(e); err != nil {
			return err
		}
	}
	return nil
}

func (f *registryMirrorFlag) Append(e string) error {
	host, mirror, ok := strings.Cut(strings.TrimSpace(e), "=")
	if !ok || host == "" || mirror == "" {
		return fmt.Errorf("%q is not HOST=URL, such as docker.io=https://mirror.local:5000", e)
	}
	if *f.m == nil {
		*f.m = map[string]Registry{}
	}
	r := (*f.m)[host]
	if !slices.ContainsFunc(f.entries, func(s string) bool { return strings.HasPrefix(s, host+"=") }) {
		r.Mirrors = nil // the first mirror named on the command line replaces the file's
	}
	r.Mirrors = append(r.Mirrors, mirror)
	(*f.m)[host] = r
	f.entries = append(f.entries, host+"="+mirror)
	return nil
}

func (f *registryMirrorFlag) Replace(vals []string) error {
	f.entries = nil
	for _, v := range vals {
		if err := f.Append(v); err != nil {
			return err
		}
	}
	return nil
}

func (f *registryMirrorFlag) GetSlice() []string { return slices.Clone(f.entries) }

// insecureRegistryFlag marks registries insecure.
type insecureRegistryFlag struct {
	m     *map[string]Registry
	hosts []string
}

func (f *insecureRegistryFlag) String() string { return "[" + strings.Join(f.hosts, ",") + "]" }
func (f *insecureRegistryFlag) Type() string   { return "HOST" }

func (f *insecureRegistryFlag) Set(v string) error {
	for _, h := range strings.Split(v, ",") {
		if err := f.Append(h); err != nil {
			return err
		}
	}
	return nil
}

func (f *insecureRegistryFlag) Append(h string) error {
	h = strings.TrimSpace(h)
	if h == "" {
		return fmt.Errorf("empty registry host")
	}
	if *f.m == nil {
		*f.m = map[string]Registry{}
	}
	r := (*f.m)[h]
	r.Insecure = true
	(*f.m)[h] = r
	f.hosts = append(f.hosts, h)
	sort.Strings(f.hosts)
	return nil
}

func (f *insecureRegistryFlag) Replace(vals []string) error {
	f.hosts = nil
	for _, v := range vals {
		if err := f.Append(v); err != nil {
			return err
		}
	}
	return nil
}

func (f *insecureRegistryFlag) GetSlice() []string { return slices.Clone(f.hosts) }
