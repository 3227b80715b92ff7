package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// ServerFlags registers every Server field as a flag bound to c. Call it with
// c set to DefaultServer() so --help shows the defaults.
func ServerFlags(fs *pflag.FlagSet, c *Server) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the raft log, snapshots, certificates and sockets")
	fs.StringVar(&c.NodeName, "node-name", c.NodeName, "name of this server, its raft ID (must not change once used)")
	fs.StringVar(&c.BindAddress, "bind-address", c.BindAddress, "IP address every listener binds: API, raft, gossip, supervisor")
	fs.StringVar(&c.AdvertiseAddress, "advertise-address", c.AdvertiseAddress, "IP address other members reach this server by (default: the bind address)")
	fs.StringVar(&c.RaftBind, "raft-bind", c.RaftBind, "host:port of the raft transport (default: bind address, port 6444)")
	fs.StringVar(&c.EtcdListen, "etcd-listen", c.EtcdListen, "also serve the etcd v3 API on this TCP host:port, for etcdctl (always served on DATA_DIR/etcd.sock)")
	fs.StringVar(&c.EtcdClientCA, "etcd-client-ca", c.EtcdClientCA, "PEM CA file: --etcd-listen then serves TLS and requires client certificates it signed (required off loopback)")
	fs.StringVar(&c.Token, "token", c.Token, "server token (cluster root); joining servers need the full token in the first server's DATA_DIR/join-token (prefer --token-file: flags show in ps)")
	fs.StringVar(&c.TokenFile, "token-file", c.TokenFile, "file holding the server token")
	fs.StringVar(&c.AgentToken, "agent-token", c.AgentToken, "agent token for a new cluster (default: generated into DATA_DIR/agent-token; prefer --agent-token-file)")
	fs.StringVar(&c.AgentTokenFile, "agent-token-file", c.AgentTokenFile, "file holding the agent token for a new cluster")
	fs.StringSliceVar(&c.Join, "join", c.Join, "address of an existing server to join (host[:gossip port]); repeatable")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", c.BootstrapExpect, "servers to wait for before bootstrapping a new cluster")
	fs.IntVar(&c.SerfPort, "serf-port", c.SerfPort, "gossip (membership) port")
	fs.IntVar(&c.SupervisorPort, "supervisor-port", c.SupervisorPort, "port serving cluster secrets to joining servers")
	fs.StringVar(&c.DebugListen, "debug-listen", c.DebugListen, "serve Go pprof profiles on this host:port (keep it on loopback)")
	fs.IntVar(&c.GOGC, "gogc", c.GOGC, "garbage collection target of the server process in percent of the live heap (Go's GOGC; the store lives in the heap, so 100 keeps up to twice it resident); a GOGC environment variable wins")
	fs.BoolVar(&c.DisableAPIServer, "disable-apiserver", c.DisableAPIServer, "run only the replicated store, without kube-apiserver")
	fs.StringVar(&c.ClusterCIDR, "cluster-cidr", c.ClusterCIDR, "pod IP range each node gets a slice of (spec.podCIDRs); an IPv4 and an IPv6 CIDR separated by a comma for dual-stack")
	fs.DurationVar(&c.NodeMonitorGracePeriod.Duration, "node-monitor-grace-period", c.NodeMonitorGracePeriod.Duration, "how long a node may go without contact before its Ready condition becomes Unknown")
	fs.BoolVar(&c.DisableAgent, "disable-agent", c.DisableAgent, "do not run a node agent on this server (it then runs no pods)")
	fs.BoolVar(&c.SchedulableControlPlane, "schedulable-control-plane", c.SchedulableControlPlane, "register this server's node without the node-role.kubernetes.io/control-plane:NoSchedule taint, so ordinary pods run on it (single-node clusters)")

	fs.StringVar(&c.Plugins.Dir, "plugin-dir", c.Plugins.Dir, "directory of third-party plugin executables (default DATA_DIR/plugins)")
	fs.StringSliceVar(&c.Plugins.Disable, "disable-plugin", c.Plugins.Disable, "built-in plugin not to run, or '*' for all (repeatable)")
	fs.Var(&externalPluginsValue{&c.Plugins.External}, "plugin", "third-party plugin NAME=SHA256[:PRESET]: runs the executable NAME in the plugin dir if its checksum matches, with at most the API permissions of PRESET (read-only, cloud-provider, ingress-controller) or of its rules in the config file (repeatable)")
	fs.IntVar(&c.Plugins.StartConcurrency, "plugin-start-concurrency", c.Plugins.StartConcurrency, "plugins a new leader starts at a time, each from launch until it first reports ready (at most 10s)")
	fs.StringVar(&c.Plugins.RunAs, "plugin-run-as", c.Plugins.RunAs, "UID:GID third-party plugins run as when the server runs as root (default "+DefaultPluginRunAs+", nobody); \""+PluginRunAsServer+"\" runs them as the server")
	fs.Var(&loadBalancerPoolValue{&c.LoadBalancer.Pools}, "load-balancer-pool", "address pool of LoadBalancer Services as NAME=ADDRESSES, comma-separated CIDRs or FIRST-LAST ranges (repeatable; none: Services get the ready nodes' addresses)")
	fs.Var(&pluginConfigValue{&c.Plugins.Config}, "plugin-config", "a plugin's configuration as NAME=JSON (repeatable)")
	fs.Var(newMemoryLimitValue(&c.Plugins.Runtime), "plugin-memory-limit", "a plugin process's soft memory limit (GOMEMLIMIT) as NAME=QUANTITY, such as scheduler=256Mi; NAME * for every plugin (repeatable; default none)")
	fs.Var(&pluginGroupValue{&c.Plugins.Groups}, "plugin-group", "serve several built-in plugins from one process sharing one informer cache, as NAME=MEMBER,MEMBER... or NAME=* for all (repeatable; opt-in for the smallest machines: one crash takes every member; default none, a process per plugin)")
	fs.Var(newGOGCValue(&c.Plugins.Runtime), "plugin-gogc", "a plugin process's garbage collection target (GOGC) as NAME=PERCENT; -1 for off, which needs a memory limit; NAME * for every plugin (repeatable; default Go's 100)")

	fs.IntVar(&c.APIServer.Port, "api-port", c.APIServer.Port, "HTTPS port of the Kubernetes API")
	fs.StringVar(&c.APIServer.ServiceCIDR, "service-cidr", c.APIServer.ServiceCIDR, "range ClusterIPs are allocated from; an IPv4 and an IPv6 CIDR (/108 or longer) separated by a comma for dual-stack Services")
	fs.StringVar(&c.APIServer.NodePortRange, "service-node-port-range", c.APIServer.NodePortRange, "range NodePorts are allocated from")
	fs.StringVar(&c.APIServer.ClusterDomain, "cluster-domain", c.APIServer.ClusterDomain, "DNS domain of the cluster")
	fs.StringVar(&c.APIServer.PodSecurity.Enforce, "pod-security-enforce", c.APIServer.PodSecurity.Enforce, "Pod Security level enforced in namespaces without their own label: privileged, baseline or restricted")
	fs.StringVar(&c.APIServer.PodSecurity.Warn, "pod-security-warn", c.APIServer.PodSecurity.Warn, "Pod Security level warned about: privileged, baseline or restricted")
	fs.StringVar(&c.APIServer.PodSecurity.Audit, "pod-security-audit", c.APIServer.PodSecurity.Audit, "Pod Security level audited: privileged, baseline or restricted")
	fs.StringSliceVar(&c.APIServer.PodSecurity.ExemptNamespaces, "pod-security-exempt-namespace", c.APIServer.PodSecurity.ExemptNamespaces, "namespace Pod Security never checks (repeatable)")
	fs.StringToStringVar(&c.APIServer.ExtraArgs, "kube-apiserver-arg", c.APIServer.ExtraArgs, "extra kube-apiserver flag as key=value (repeatable)")
	fs.StringVar(&c.APIServer.EncryptionConfig, "encryption-config", c.APIServer.EncryptionConfig, "kube-apiserver EncryptionConfiguration file to use instead of the generated DATA_DIR/pki/encryption-config.yaml (the same file on every server)")
	fs.BoolVar(&c.APIServer.DisableSecretsEncryption, "disable-secrets-encryption", c.APIServer.DisableSecretsEncryption, "store Secrets in clear (they are encrypted at rest by default)")

	fs.DurationVar(&c.Raft.HeartbeatTimeout.Duration, "raft-heartbeat-timeout", c.Raft.HeartbeatTimeout.Duration, "raft heartbeat timeout")
	fs.DurationVar(&c.Raft.ElectionTimeout.Duration, "raft-election-timeout", c.Raft.ElectionTimeout.Duration, "raft election timeout")
	fs.DurationVar(&c.Raft.LeaderLeaseTimeout.Duration, "raft-leader-lease-timeout", c.Raft.LeaderLeaseTimeout.Duration, "how long a leader serves without contact with a quorum")
	fs.IntVar(&c.Raft.MaxTimeoutMultiplier, "raft-max-timeout-multiplier", c.Raft.MaxTimeoutMultiplier, "most times a server starved of CPU multiplies its own raft heartbeat and election timeouts while it follows (it measures its scheduling delay; 1: off)")
	fs.Uint64Var(&c.Raft.SnapshotThreshold, "raft-snapshot-threshold", c.Raft.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&c.Raft.SnapshotInterval.Duration, "raft-snapshot-interval", c.Raft.SnapshotInterval.Duration, "how often the snapshot threshold is checked")
	fs.Uint64Var(&c.Raft.TrailingLogs, "raft-trailing-logs", c.Raft.TrailingLogs, "log entries kept after a snapshot")
	fs.DurationVar(&c.Raft.ApplyTimeout.Duration, "raft-apply-timeout", c.Raft.ApplyTimeout.Duration, "how long a write waits for commit before its outcome is reported unknown")
	fs.StringVar(&c.Raft.LogStore, "raft-log-store", c.Raft.LogStore, "where the raft log is kept: wal (one fsync per batch) or boltdb (raft.db); a data dir whose log is in the other store has it moved on start")

	fs.IntVar(&c.Store.MaxRequestBytes, "max-request-bytes", c.Store.MaxRequestBytes, "largest etcd request accepted, in bytes")
	fs.IntVar(&c.Store.MaxTxnOps, "max-txn-ops", c.Store.MaxTxnOps, "most operations in one transaction")
	fs.Int64Var(&c.Store.HistoryRevisions, "history-revisions", c.Store.HistoryRevisions, "revisions of history kept for watches and past reads (0: until a client compacts)")
	fs.Int64Var(&c.Store.HistoryBytes, "history-bytes", c.Store.HistoryBytes, "bytes of history (retained events' keys and values) kept for watches and past reads; older revisions are compacted past it (0: no size bound)")
	fs.Int64Var(&c.Store.QuotaBytes, "store-quota-bytes", c.Store.QuotaBytes, "store size in bytes past which writes are refused with \"mvcc: database space exceeded\" and the NOSPACE alarm is raised (etcd's --quota-backend-bytes)")
	fs.DurationVar(&c.Store.LeaseMinTTL.Duration, "lease-min-ttl", c.Store.LeaseMinTTL.Duration, "shortest lease TTL granted")
	fs.StringVar(&c.Snapshots.Schedule, "snapshot-schedule", c.Snapshots.Schedule, "take a snapshot of the store on this cron schedule (\"0 */12 * * *\", \"@daily\", \"@every 6h\"); empty: none")
	fs.IntVar(&c.Snapshots.Retention, "snapshot-retention", c.Snapshots.Retention, "scheduled snapshots kept; older ones are deleted")
	fs.StringVar(&c.Snapshots.Dir, "snapshot-dir", c.Snapshots.Dir, "directory of the scheduled snapshots (default DATA_DIR/snapshots), e.g. on another disk")

	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "log level: debug, info, warn or error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "log format: text or json")
	NodeFlags(fs, &c.Agent)
}

// LoadServer builds the effective configuration: defaults, then the YAML
// file at path (if any), then every flag set on the command line in fs. The
// result is validated.
func LoadServer(path string, fs *pflag.FlagSet) (Server, error) {
	return LoadServerFrom(DefaultServer(), path, fs)
}

// LoadServerFrom is LoadServer starting from base instead of DefaultServer
// (a caller whose defaults come from the environment).
func LoadServerFrom(base Server, path string, fs *pflag.FlagSet) (Server, error) {
	return load(base, path, fs, ServerFlags, (*Server).Validate)
}

// load is the one way every process reads its configuration: base, then the
// file, then the flags set in fs (re-bound through bind), then validate.
func load[T any](base T, path string, fs *pflag.FlagSet, bind func(*pflag.FlagSet, *T), validate func(*T) error) (T, error) {
	cfg := base
	if path != "" {
		if err := readYAML(path, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := overlayFlags(fs, func(target *pflag.FlagSet) { bind(target, &cfg) }); err != nil {
		return cfg, err
	}
	if err := validate(&cfg); err != nil {
		src := "flags"
		if path != "" {
			src = fmt.Sprintf("config file %s and flags", path)
		}
		return cfg, fmt.Errorf("invalid configuration (%s):\n%w", src, err)
	}
	return cfg, nil
}

// readYAML decodes path strictly: an unknown key is an error naming it, so
// a typo never silently falls back to a default.
func readYAML(path string, into any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, into); err != nil {
		msg := err.Error()
		msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
		return fmt.Errorf("config file %s: %s", path, msg)
	}
	return nil
}

// overlayFlags re-applies every flag the user set in parsed onto a flag set
// bound to the final config, so flags win over the file.
func overlayFlags(parsed *pflag.FlagSet, bind func(*pflag.FlagSet)) error {
	if parsed == nil {
		return nil
	}
	target := pflag.NewFlagSet("overlay", pflag.ContinueOnError)
	bind(target)
	var err error
	parsed.Visit(func(f *pflag.Flag) {
		dst := target.Lookup(f.Name)
		if dst == nil || err != nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if dsv, ok := dst.Value.(pflag.SliceValue); ok {
				err = dsv.Replace(sv.GetSlice())
				return
			}
		}
		v := f.Value.String()
		if f.Value.Type() == "stringToString" {
			v = strings.TrimSuffix(strings.TrimPrefix(v, "["), "]")
		}
		if e := target.Set(f.Name, v); e != nil {
			err = fmt.Errorf("flag --%s: %w", f.Name, e)
		}
	})
	return err
}

// ParseLevel parses a log level name.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not a log level; use debug, info, warn or error", s)
	}
	return l, nil
}
