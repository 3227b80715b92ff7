package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// CloudProviderExternal is Node.CloudProvider's one value: a
// cloud-provider plugin initialises the node.
const CloudProviderExternal = "external"

// Default ports of a node agent.
const (
	// DefaultKubeletPort is the kubelet API port (logs, exec, port-forward).
	DefaultKubeletPort = 10250
)

// Agent is the configuration of `keelson agent`. Field names are the YAML
// keys; every field is also a flag (see AgentFlags).
type Agent struct {
	// DataDir holds the agent's state under DataDir/agent (credentials,
	// containerd's root and state, pod volumes and logs) and the image
	// tarballs it imports from DataDir/images.
	DataDir string `json:"dataDir"`
	// NodeName is the name of this node's Node object.
	NodeName string `json:"nodeName"`
	// Server is the URL of any server's Kubernetes API, https://ADDR:6443.
	Server string `json:"server"`
	// Token is the full agent token (DATA_DIR/agent-token on the server
	// that created it); a server token works too but is cluster root.
	Token string `json:"token"`
	// TokenFile is a file holding Token: the way to pass it, since a flag
	// shows in ps.
	TokenFile string `json:"tokenFile"`
	// SupervisorPort is the servers' supervisor port, which issues node
	// credentials against the token.
	SupervisorPort int `json:"supervisorPort"`
	// SerfPort is this agent's gossip port; 0 picks a free one.
	SerfPort int `json:"serfPort"`
	// ClusterDomain is the cluster's DNS suffix, for pods' resolv.conf and
	// /etc/hosts.
	ClusterDomain string `json:"clusterDomain"`
	// ClusterCIDR is the cluster's pod range, the servers' --cluster-cidr:
	// traffic inside it is never NATed. One CIDR, or an IPv4 and an IPv6
	// CIDR separated by a comma.
	ClusterCIDR string `json:"clusterCIDR"`
	// Log configures logging.
	Log Log `json:"log"`
	// PluginDir holds the executables of third-party node plugins, which
	// the servers declare (plugins.external with scope node) and pin by
	// SHA-256; default DATA_DIR/plugins.
	PluginDirectory string `json:"pluginDir"`
	// DebugListen, when set, serves Go's pprof profiles of the agent on
	// this host:port (unauthenticated: keep it on loopback).
	DebugListen string `json:"debugListen"`
	// Gossip tunes how fast this agent's member of the gossip pool detects
	// a failed member. A member this agent declares failed is failed for the
	// whole pool, and the LoadBalancer announcer moves IPs when it is.
	Gossip AgentGossip `json:"gossip"`

	// Node holds what an agent and a server's embedded agent share.
	Node `json:",inline"`
}

// AgentGossip is an agent's failure detection timing (memberlist's).
type AgentGossip struct {
	// ProbeInterval is how often the agent probes a random member; default
	// 1s (memberlist's LAN profile).
	ProbeInterval Duration `json:"probeInterval"`
	// ProbeTimeout is how long a probe waits for its ack before indirect
	// probes; default 500ms, at most ProbeInterval.
	ProbeTimeout Duration `json:"probeTimeout"`
	// SuspicionMult scales how long a suspected member has to refute before
	// it is declared failed (SuspicionMult x ProbeInterval at least, for
	// pools under ten members); default 4.
	SuspicionMult int `json:"suspicionMult"`
}

func (g AgentGossip) validate(bad func(field, format string, args ...any)) {
	for _, d := range []struct {
		field string
		v     Duration
	}{{"gossip.probeInterval (--gossip-probe-interval)", g.ProbeInterval}, {"gossip.probeTimeout (--gossip-probe-timeout)", g.ProbeTimeout}} {
		if err := d.v.check(); err != nil {
			bad(d.field, "%v", err)
		} else if d.v.Duration < 50*time.Millisecond {
			bad(d.field, "%s is too short; use at least 50ms", d.v.Duration)
		}
	}
	if g.ProbeTimeout.Duration > g.ProbeInterval.Duration {
		bad("gossip.probeTimeout (--gossip-probe-timeout)", "%s exceeds gossip.probeInterval %s; make it at most the interval", g.ProbeTimeout.Duration, g.ProbeInterval.Duration)
	}
	if g.SuspicionMult < 1 {
		bad("gossip.suspicionMult (--gossip-suspicion-mult)", "%d must be at least 1", g.SuspicionMult)
	}
}

// PluginDir is the effective node plugin directory.
func (c *Agent) PluginDir() string {
	if c.PluginDirectory != "" {
		return c.PluginDirectory
	}
	return filepath.Join(c.DataDir, "plugins")
}

// Node is the node-local part of an agent's configuration: how it runs
// containers, wires pods to the network and serves the kubelet API. A
// server's embedded agent reads it from the server config's `agent` key.
type Node struct {
	// NodeIP is the node's InternalIP. Empty: the local address this host
	// uses to reach the server.
	NodeIP string `json:"nodeIP"`
	// NodeExternalIPs are added to the Node's addresses as ExternalIP (the
	// addresses the node is reached by from outside, e.g. behind NAT).
	NodeExternalIPs []string `json:"nodeExternalIPs"`
	// CloudProvider is "" (none) or "external": the Node is registered with
	// the node.cloudprovider.kubernetes.io/uninitialized taint, which a
	// cloud-provider plugin removes once it initialised the node, and its
	// addresses are left to that plugin once set (kubelet's
	// --cloud-provider=external).
	CloudProvider string `json:"cloudProvider"`
	// NodeLabels are added to the Node at registration.
	NodeLabels map[string]string `json:"nodeLabels"`
	// StorageDir holds the directories of local-path volumes provisioned
	// on this node, one per PersistentVolume. Empty: DATA_DIR/storage.
	StorageDir string  `json:"storageDir"`
	Kubelet    Kubelet `json:"kubelet"`
	Runtime    Runtime `json:"runtime"`
	Network    Network `json:"network"`
	// Registries configures image registries by host ("docker.io",
	// "registry.local:5000"): mirrors tried first and plain-HTTP access.
	Registries map[string]Registry `json:"registries"`
}

// Kubelet configures the node's pod lifecycle and its kubelet API.
type Kubelet struct {
	// Address is the IP the kubelet API listens on.
	Address string `json:"address"`
	// Port is the kubelet API's HTTPS port.
	Port int `json:"port"`
	// MaxPods is the pod capacity the node reports.
	MaxPods int `json:"maxPods"`
	// ClusterDNS are the nameservers of ClusterFirst pods; empty gives them
	// the node's resolv.conf, as kubelet does without cluster DNS.
	ClusterDNS []string `json:"clusterDNS"`
	// ResolvConf is the node's resolver file that Default pods inherit.
	ResolvConf string `json:"resolvConf"`
	// SystemReserved is held back from allocatable for the system
	// ("cpu": "100m", "memory": "256Mi", "ephemeral-storage": "1Gi").
	SystemReserved map[string]string `json:"systemReserved"`
	// EvictionHard are the thresholds under which the node reports
	// MemoryPressure (memory.available), DiskPressure (nodefs.available) and
	// PIDPressure (pid.available), as quantities or percentages.
	EvictionHard map[string]string `json:"evictionHard"`
	// ContainerLogMaxSize rotates a container's log file past this size;
	// ContainerLogMaxFiles is how many files (current included) are kept.
	ContainerLogMaxSize  string `json:"containerLogMaxSize"`
	ContainerLogMaxFiles int    `json:"containerLogMaxFiles"`
	// CgroupRoot is the cgroup under which pods' cgroups are created.
	CgroupRoot string `json:"cgroupRoot"`
	// SeccompProfileRoot holds the seccomp profiles (JSON) that pods name
	// with seccompProfile type Localhost. Empty: DATA_DIR/agent/seccomp,
	// kubelet's ROOT_DIR/seccomp.
	SeccompProfileRoot string `json:"seccompProfileRoot"`
	// SeccompDefault confines containers that name no seccomp profile with
	// the runtime's default one (kubelet's seccompDefault, off by default).
	SeccompDefault bool `json:"seccompDefault"`
	// AllowedUnsafeSysctls are the sysctls, or patterns ending in *, that
	// pods may set beyond kubelet's safe set ("kernel.msg*",
	// "net.core.somaxconn"). Each must be namespaced.
	AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls"`
	// SyncFrequency is how often every pod is re-synced even without a
	// change (refreshing configMap, secret and token volumes).
	SyncFrequency Duration `json:"syncFrequency"`
	// NodeLeaseDuration is the Lease's duration; it is renewed every quarter
	// of it.
	NodeLeaseDuration Duration `json:"nodeLeaseDuration"`
	// NodeStatusUpdateFrequency is how often the node's status is measured;
	// it is written only when it changed.
	NodeStatusUpdateFrequency Duration `json:"nodeStatusUpdateFrequency"`
}

// Runtime configures the container runtime.
type Runtime struct {
	// Containerd is the socket of an existing containerd. Empty: the agent
	// runs its own, with root and state under DATA_DIR/agent/containerd.
	Containerd string `json:"containerd"`
	// ContainerdBin is the containerd binary the agent runs.
	ContainerdBin string `json:"containerdBin"`
	// Snapshotter prepares containers' root filesystems.
	Snapshotter string `json:"snapshotter"`
}

// Network configures pods' networking through CNI and the node's service
// networking (service proxy, cluster DNS, NetworkPolicy, routes to the
// other nodes' pods).
type Network struct {
	// CNIBinDir holds the CNI plugins (bridge, host-local, loopback, portmap).
	CNIBinDir string `json:"cniBinDir"`
	// Bridge is the Linux bridge pods are attached to.
	Bridge string `json:"bridge"`
	// MTU of pods' interfaces; 0 lets the bridge plugin choose.
	MTU int `json:"mtu"`
	// Masquerade SNATs traffic from pods leaving the cluster's pod range
	// (only the node's pod CIDR when the service network is disabled).
	Masquerade bool `json:"masquerade"`
	// DisableServiceNetwork runs no service proxy, cluster DNS, NetworkPolicy
	// enforcement nor routes to other nodes' pods on this node, for nodes
	// whose network another component programs.
	DisableServiceNetwork bool `json:"disableServiceNetwork"`
	// DisableNetworkPolicy leaves NetworkPolicies unenforced on this node.
	DisableNetworkPolicy bool `json:"disableNetworkPolicy"`
	// NodePortAddresses limits node ports to the local addresses in these
	// ranges; empty: every non-loopback address.
	NodePortAddresses []string `json:"nodePortAddresses"`
	// KeepRulesOnShutdown leaves the service network's rules, routes and
	// DNS address in place when the agent stops, so that pods keep their
	// services across an agent restart (kube-proxy's behaviour); by default
	// a stopping agent removes them, as `keelson agent --cleanup` does.
	KeepRulesOnShutdown bool `json:"keepRulesOnShutdown"`
	// ProxyMode is how the service proxy programs the kernel: "nftables"
	// (one nftables table with verdict maps, changes written by difference
	// over netlink) or "iptables" (chains written with iptables-restore).
	// Empty (the default) picks nftables where the kernel supports it and
	// falls back to iptables, with a log line, where it does not.
	ProxyMode string `json:"proxyMode"`
}

// DefaultClusterDNS is the cluster DNS address ClusterFirst pods use when
// kubelet.clusterDNS is empty and the node runs its service network: the
// tenth address of the default service range, as k3s does.
const DefaultClusterDNS = "10.43.0.10"

// Registry configures one image registry.
type Registry struct {
	// Mirrors are endpoints (https://mirror:5000) tried, in order, before
	// the registry itself.
	Mirrors []string `json:"mirrors"`
	// Insecure allows plain HTTP and unverified TLS to the registry and its
	// mirrors.
	Insecure bool `json:"insecure"`
}

// Eviction signals the agent measures.
const (
	SignalMemoryAvailable = "memory.available"
	SignalNodeFSAvailable = "nodefs.available"
	SignalPIDAvailable    = "pid.available"
)

// DefaultNode returns the node-local defaults.
func DefaultNode() Node {
	return Node{
		Kubelet: Kubelet{
			Address:    "0.0.0.0",
			Port:       DefaultKubeletPort,
			MaxPods:    110,
			ResolvConf: "/etc/resolv.conf",
			EvictionHard: map[string]string{
				SignalMemoryAvailable: "100Mi",
				SignalNodeFSAvailable: "10%",
				SignalPIDAvailable:    "5%",
			},
			ContainerLogMaxSize:       "10Mi",
			ContainerLogMaxFiles:      5,
			CgroupRoot:                "/keelson",
			SyncFrequency:             Duration{Duration: time.Minute},
			NodeLeaseDuration:         Duration{Duration: 40 * time.Second},
			NodeStatusUpdateFrequency: Duration{Duration: 10 * time.Second},
		},
		Runtime: Runtime{ContainerdBin: "containerd", Snapshotter: "overlayfs"},
		Network: Network{CNIBinDir: "/usr/lib/cni", Bridge: "keelson0", Masquerade: true},
	}
}

// DefaultAgent returns the configuration an agent runs with when nothing is
// set.
func DefaultAgent() Agent {
	host, _ := os.Hostname()
	return Agent{
		DataDir:        DefaultDataDir,
		NodeName:       strings.ToLower(host),
		SupervisorPort: DefaultSupervisorPort,
		SerfPort:       DefaultSerfPort,
		ClusterDomain:  "cluster.local",
		ClusterCIDR:    DefaultClusterCIDR,
		Log:            Log{Level: "info", Format: "text"},
		Gossip: AgentGossip{ProbeInterval: Duration{Duration: time.Second}, ProbeTimeout: Duration{Duration: 500 * time.Millisecond},
			SuspicionMult: 4},
		Node: DefaultNode(),
	}
}

// AgentDir is where an agent with data dir dataDir keeps its state.
func AgentDir(dataDir string) string { return filepath.Join(dataDir, "agent") }

// ImagesDir is where an agent with data dir dataDir imports image tarballs
// from.
func ImagesDir(dataDir string) string { return filepath.Join(dataDir, "images") }

// StorageDir is where a node with data dir dataDir keeps its local-path
// volumes: storageDir when set, else DATA_DIR/storage.
func StorageDir(dataDir, storageDir string) string {
	if storageDir != "" {
		return storageDir
	}
	return filepath.Join(dataDir, "storage")
}

// ContainerdSocket is the socket of the containerd an agent runs itself.
func ContainerdSocket(dataDir string) string {
	return filepath.Join(AgentDir(dataDir), "containerd", "containerd.sock")
}

// Validate checks every field and returns all problems at once, each naming
// the field (as its YAML key and flag) and what to do.
func (c *Agent) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" || !filepath.IsAbs(c.DataDir) {
		bad("dataDir (--data-dir)", "%q must be an absolute path such as %s", c.DataDir, DefaultDataDir)
	}
	c.Gossip.validate(bad)
	if c.PluginDirectory != "" && !filepath.IsAbs(c.PluginDirectory) {
		bad("pluginDir (--plugin-dir)", "%q must be an absolute path", c.PluginDirectory)
	}
	if c.DebugListen != "" {
		if err := validHostPort(c.DebugListen); err != nil {
			bad("debugListen (--debug-listen)", "%q %v", c.DebugListen, err)
		}
	}
	if c.NodeName == "" {
		bad("nodeName (--node-name)", "must not be empty; the hostname could not be read, so set it")
	} else if err := validDNSLabelish(c.NodeName); err != nil {
		bad("nodeName (--node-name)", "%q %v", c.NodeName, err)
	}
	if u, err := url.Parse(c.Server); c.Server == "" || err != nil || u.Scheme != "https" || u.Host == "" {
		bad("server (--server)", "%q must be the URL of a server's Kubernetes API, such as https://10.0.0.1:6443", c.Server)
	}
	if err := tokenFromFile(&c.Token, c.TokenFile, "token (--token)", "tokenFile (--token-file)"); err != nil {
		errs = append(errs, err)
	} else if c.Token == "" {
		bad("token (--token) or tokenFile (--token-file)", "must give the agent token (a file holding a copy of a server's DATA_DIR/agent-token)")
	}
	for _, p := range []struct {
		field string
		v     int
	}{{"supervisorPort (--supervisor-port)", c.SupervisorPort}, {"serfPort (--serf-port)", c.SerfPort}} {
		if p.v < 0 || p.v > 65535 {
			bad(p.field, "%d is not a port (0-65535)", p.v)
		}
	}
	if c.ClusterDomain == "" || strings.HasPrefix(c.ClusterDomain, ".") || strings.HasSuffix(c.ClusterDomain, ".") {
		bad("clusterDomain (--cluster-domain)", "%q must be a domain such as cluster.local", c.ClusterDomain)
	}
	if _, err := ParseClusterCIDRs(c.ClusterCIDR); err != nil {
		bad("clusterCIDR (--cluster-cidr)", "%v; it must be the servers' --cluster-cidr", err)
	}
	errs = append(errs, c.Node.Validate("")...)
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level (--log-level)", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format (--log-format)", "%q is not text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

// Validate checks the node-local fields; prefix is prepended to every YAML
// key ("agent." in a server's config).
func (n *Node) Validate(prefix string) []error {
	var errs []error
	bad := func(field, flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s (--%s): %s", prefix, field, flag, fmt.Sprintf(format, args...)))
	}
	if n.NodeIP != "" {
		if ip := net.ParseIP(n.NodeIP); ip == nil || ip.IsUnspecified() {
			bad("nodeIP", "node-ip", "%q is not a usable IP address", n.NodeIP)
		}
	}
	for _, e := range n.NodeExternalIPs {
		if ip := net.ParseIP(e); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
			bad("nodeExternalIPs", "node-external-ip", "%q is not a usable IP address", e)
		}
	}
	if n.CloudProvider != "" && n.CloudProvider != CloudProviderExternal {
		bad("cloudProvider", "cloud-provider", "%q is not a cloud provider setting; use %q (a cloud-provider plugin initialises the node) or leave it empty", n.CloudProvider, CloudProviderExternal)
	}
	if n.StorageDir != "" && !filepath.IsAbs(n.StorageDir) {
		bad("storageDir", "storage-dir", "%q must be an absolute directory such as /var/lib/keelson/storage", n.StorageDir)
	}
	for k := range n.NodeLabels {
		if k == "" || strings.ContainsAny(k, " =,") {
			bad("nodeLabels", "node-label", "%q is not a label key", k)
		}
	}
	n.Kubelet.validate(bad)
	n.validateRuntimeAndNetwork(bad)
	return errs
}

// fieldError reports a bad field, with its flag and what is wrong.
type fieldError func(field, flag, format string, args ...any)

// validate checks the kubelet section.
func (k *Kubelet) validate(bad fieldError) {
	if net.ParseIP(k.Address) == nil {
		bad("kubelet.address", "kubelet-address", "%q is not an IP address", k.Address)
	}
	if k.Port < 0 || k.Port > 65535 {
		bad("kubelet.port", "kubelet-port", "%d is not a port (0-65535)", k.Port)
	}
	if k.MaxPods < 1 {
		bad("kubelet.maxPods", "max-pods", "%d must be at least 1", k.MaxPods)
	}
	for _, d := range k.ClusterDNS {
		if net.ParseIP(d) == nil {
			bad("kubelet.clusterDNS", "cluster-dns", "%q is not an IP address", d)
		}
	}
	for name, v := range k.SystemReserved {
		if name != "cpu" && name != "memory" && name != "ephemeral-storage" && name != "pid" {
			bad("kubelet.systemReserved", "system-reserved", "%q is not cpu, memory, ephemeral-storage or pid", name)
		} else if _, err := resource.ParseQuantity(v); err != nil {
			bad("kubelet.systemReserved", "system-reserved", "%s=%q is not a quantity such as 100m or 256Mi", name, v)
		}
	}
	for signal, v := range k.EvictionHard {
		if signal != SignalMemoryAvailable && signal != SignalNodeFSAvailable && signal != SignalPIDAvailable {
			bad("kubelet.evictionHard", "eviction-hard", "%q is not one of %s, %s, %s", signal, SignalMemoryAvailable, SignalNodeFSAvailable, SignalPIDAvailable)
		} else if _, _, err := ParseThreshold(v); err != nil {
			bad("kubelet.evictionHard", "eviction-hard", "%s: %v", signal, err)
		}
	}
	if q, err := resource.ParseQuantity(k.ContainerLogMaxSize); err != nil || q.Value() < 1024 {
		bad("kubelet.containerLogMaxSize", "container-log-max-size", "%q must be a size of at least 1Ki, such as 10Mi", k.ContainerLogMaxSize)
	}
	if k.ContainerLogMaxFiles < 1 {
		bad("kubelet.containerLogMaxFiles", "container-log-max-files", "%d must be at least 1", k.ContainerLogMaxFiles)
	}
	if !strings.HasPrefix(k.CgroupRoot, "/") || strings.Contains(k.CgroupRoot, "..") {
		bad("kubelet.cgroupRoot", "cgroup-root", "%q must be an absolute cgroup path such as /keelson", k.CgroupRoot)
	}
	if k.SeccompProfileRoot != "" && !filepath.IsAbs(k.SeccompProfileRoot) {
		bad("kubelet.seccompProfileRoot", "seccomp-profile-root", "%q must be an absolute directory such as /var/lib/kubelet/seccomp", k.SeccompProfileRoot)
	}
	for _, p := range k.AllowedUnsafeSysctls {
		if err := CheckSysctlPattern(p); err != nil {
			bad("kubelet.allowedUnsafeSysctls", "allowed-unsafe-sysctls", "%v", err)
		}
	}
	for _, d := range []struct {
		field, flag string
		v           Duration
		min         time.Duration
	}{
		{"kubelet.syncFrequency", "sync-frequency", k.SyncFrequency, time.Second},
		{"kubelet.nodeLeaseDuration", "node-lease-duration", k.NodeLeaseDuration, 4 * time.Second},
		{"kubelet.nodeStatusUpdateFrequency", "node-status-update-frequency", k.NodeStatusUpdateFrequency, time.Second},
	} {
		if err := d.v.check(); err != nil {
			bad(d.field, d.flag, "%v", err)
		} else if d.v.Duration < d.min {
			bad(d.field, d.flag, "%s is too short; use at least %s", d.v.Duration, d.min)
		}
	}
}

// validateRuntimeAndNetwork checks the runtime, network and registries
// sections.
func (n *Node) validateRuntimeAndNetwork(bad fieldError) {
	if n.Runtime.Containerd == "" && n.Runtime.ContainerdBin == "" {
		bad("runtime.containerdBin", "containerd-bin", "must name the containerd binary when runtime.containerd (--containerd) is empty")
	}
	if n.Runtime.Snapshotter == "" {
		bad("runtime.snapshotter", "snapshotter", "must not be empty; overlayfs works on most hosts, native everywhere")
	}
	if n.Network.CNIBinDir == "" {
		bad("network.cniBinDir", "cni-bin-dir", "must name the directory of the CNI plugins (Debian: /usr/lib/cni)")
	}
	if b := n.Network.Bridge; b == "" || len(b) > 15 || strings.ContainsAny(b, "/ ") {
		bad("network.bridge", "cni-bridge", "%q must be an interface name of 1 to 15 characters", b)
	}
	if n.Network.MTU != 0 && (n.Network.MTU < 576 || n.Network.MTU > 65535) {
		bad("network.mtu", "cni-mtu", "%d must be 0 (default) or between 576 and 65535", n.Network.MTU)
	}
	if m := n.Network.ProxyMode; m != "" && m != "iptables" && m != "nftables" {
		bad("network.proxyMode", "proxy-mode", "%q must be nftables, iptables, or empty for nftables where the kernel supports it", m)
	}
	for _, a := range n.Network.NodePortAddresses {
		if _, err := netip.ParsePrefix(a); err != nil {
			bad("network.nodePortAddresses", "nodeport-addresses", "%q is not a CIDR such as 10.0.0.0/8 (use /32 for one address)", a)
		}
	}
	for host, r := range n.Registries {
		if host == "" || strings.Contains(host, "/") {
			bad("registries", "registry-mirror", "%q must be a registry host such as docker.io or registry.local:5000", host)
		}
		for _, m := range r.Mirrors {
			if u, err := url.Parse(m); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("registries."+host+".mirrors", "registry-mirror", "%q must be a URL such as https://mirror.local:5000", m)
			}
		}
	}
}

// ParseThreshold parses an eviction threshold: a quantity ("100Mi", "1000")
// or a percentage ("10%"). It returns the quantity or the fraction.
func ParseThreshold(s string) (quantity int64, fraction float64, err error) {
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f < 0 || f > 100 {
			return 0, 0, fmt.Errorf("%q is not a percentage between 0%% and 100%%", s)
		}
		return 0, f / 100, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil || q.Sign() < 0 {
		return 0, 0, fmt.Errorf("%q is not a quantity (100Mi) or a percentage (10%%)", s)
	}
	return q.Value(), 0, nil
}
