// Package config holds the configuration of Keelson's processes: the types,
// their defaults, loading from a YAML file and flags (flags win), and
// validation with errors that name the field and say how to fix it.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Default ports. Every listener of a server binds the same address
// (--bind-address) with its own port, so several servers can share a host on
// different loopback addresses.
const (
	DefaultAPIPort  = 6443
	DefaultRaftPort = 6444
	DefaultEtcdPort = 2379
	// DefaultSupervisorPort serves the cluster secrets to joining servers.
	DefaultSupervisorPort = 6445
	// DefaultSerfPort is the gossip port, serf's own default.
	DefaultSerfPort = 7946
)

// DefaultDataDir is where a server keeps its state unless told otherwise.
const DefaultDataDir = "/var/lib/keelson"

// DefaultClusterCIDR is the pod IP range, k3s's default.
const DefaultClusterCIDR = "10.42.0.0/16"

// Server is the configuration of `keelson server`. Field names are the YAML
// keys; every field is also a flag (see ServerFlags).
type Server struct {
	// DataDir holds the raft log, snapshots, certificates and sockets.
	DataDir string `json:"dataDir"`
	// NodeName identifies this server in raft and, later, as a Node.
	NodeName string `json:"nodeName"`
	// BindAddress is the IP every listener binds (API, raft, etcd API).
	BindAddress string `json:"bindAddress"`
	// AdvertiseAddress is the IP other members use to reach this server,
	// when it differs from BindAddress (NAT, 0.0.0.0 binds).
	AdvertiseAddress string `json:"advertiseAddress"`
	// RaftBind overrides the raft transport's host:port.
	RaftBind string `json:"raftBind"`
	// EtcdListen, when set, also serves the etcd v3 API on this TCP
	// host:port for operators (etcdctl). It is always served on the unix
	// socket DataDir/etcd.sock.
	EtcdListen string `json:"etcdListen"`
	// EtcdClientCA is a PEM CA file: with it the EtcdListen listener serves
	// TLS and requires a client certificate that this CA signed, as etcd's
	// --client-cert-auth. A non-loopback EtcdListen requires it.
	EtcdClientCA string `json:"etcdClientCA"`
	// Token is the server token, cluster root: the first server generates
	// one (DataDir/token) and writes the full token to DataDir/join-token;
	// joining servers pass that full token ("K10<ca hash>::<secret>"). A
	// token chosen by hand needs 16 or more random characters.
	Token string `json:"token"`
	// TokenFile is a file holding Token: the way to pass it, since a flag
	// shows in ps.
	TokenFile string `json:"tokenFile"`
	// AgentToken is the secret node agents join with, which can only obtain
	// node credentials. Used when the cluster has none yet; default: a new
	// random one. The server that creates it writes the full token to
	// DataDir/agent-token. Rotate it with `keelson token rotate`.
	AgentToken string `json:"agentToken"`
	// AgentTokenFile is a file holding AgentToken.
	AgentTokenFile string `json:"agentTokenFile"`
	// Join lists addresses of existing servers (host or host:port of their
	// gossip port, default 7946) to join.
	Join []string `json:"join"`
	// BootstrapExpect is how many servers to wait for before bootstrapping
	// a new cluster; 1 bootstraps alone unless Join is set.
	BootstrapExpect int `json:"bootstrapExpect"`
	// SerfPort is the gossip (membership) port.
	SerfPort int `json:"serfPort"`
	// SupervisorPort serves joining servers their cluster secrets.
	SupervisorPort int `json:"supervisorPort"`
	// DebugListen, when set, serves Go's pprof profiles on this host:port
	// (keep it on loopback).
	DebugListen string `json:"debugListen"`
	// GOGC is the server process's garbage collection target: the heap
	// grows by this percent of what is live before a collection. The store
	// is held in the heap, so Go's default of 100 keeps up to twice the
	// store resident; the default, 50, keeps 1.5 times for about 13% more
	// CPU time per write (README, "Store memory"). It is a target, never a
	// cap: a larger store still fits. A GOGC environment variable, when
	// set, wins over it.
	GOGC int `json:"gogc"`
	// DisableAPIServer runs only the replicated store (benchmarks, store-only
	// members).
	DisableAPIServer bool `json:"disableAPIServer"`
	// DisableAgent runs no node agent on this server.
	DisableAgent bool `json:"disableAgent"`
	// SchedulableControlPlane registers this server's node without the
	// node-role.kubernetes.io/control-plane:NoSchedule taint, so that
	// ordinary pods run on it: for single-node clusters (make run sets it).
	// Off, only pods tolerating the taint run beside the cluster's keys.
	SchedulableControlPlane bool `json:"schedulableControlPlane"`
	// ClusterCIDR is the range pod IPs come from: the nodeipam plugin gives
	// every Node a slice of it (spec.podCIDRs). One CIDR, or an IPv4 and an
	// IPv6 CIDR separated by a comma for dual-stack.
	ClusterCIDR string `json:"clusterCIDR"`
	// NodeMonitorGracePeriod is how long a node may go without contact (no
	// gossip, or no Lease renewal for nodes outside the gossip pool) before
	// its Node's Ready condition becomes Unknown.
	NodeMonitorGracePeriod Duration `json:"nodeMonitorGracePeriod"`
	// Agent configures the node agent the server runs (unless
	// DisableAgent): runtime, pod network and kubelet API.
	Agent Node `json:"agent"`

	APIServer APIServer `json:"apiServer"`
	// LoadBalancer holds the address pools of LoadBalancer Services.
	LoadBalancer LoadBalancer `json:"loadBalancer"`
	Plugins      Plugins      `json:"plugins"`
	Raft         Raft         `json:"raft"`
	Store        Store        `json:"store"`
	Snapshots    Snapshots    `json:"snapshots"`
	Log          Log          `json:"log"`
}

// APIServer configures the embedded kube-apiserver.
type APIServer struct {
	// Port is the HTTPS port of the Kubernetes API.
	Port int `json:"port"`
	// ServiceCIDR is the range ClusterIPs are allocated from.
	ServiceCIDR string `json:"serviceCIDR"`
	// NodePortRange is the range NodePorts are allocated from, "low-high".
	NodePortRange string `json:"nodePortRange"`
	// ClusterDomain is the DNS suffix of services.
	ClusterDomain string `json:"clusterDomain"`
	// PodSecurity is the Pod Security admission default: baseline
	// enforced, restricted warned and audited, kube-system exempt.
	PodSecurity PodSecurity `json:"podSecurity"`
	// ExtraArgs are passed to kube-apiserver as --key=value, last; an
	// admission-control-config-file there replaces PodSecurity.
	ExtraArgs map[string]string `json:"extraArgs"`
	// EncryptionConfig is the path of a kube-apiserver
	// EncryptionConfiguration to use instead of the one every server
	// generates and shares (DATA_DIR/pki/encryption-config.yaml, which
	// encrypts Secrets with secretbox). Every server needs the same file.
	EncryptionConfig string `json:"encryptionConfig"`
	// DisableSecretsEncryption stores Secrets in clear in the raft log,
	// snapshots and backups. Secrets already encrypted stay unreadable
	// until it is turned back off.
	DisableSecretsEncryption bool `json:"disableSecretsEncryption"`
}

// Raft tunes the consensus layer.
type Raft struct {
	// HeartbeatTimeout and ElectionTimeout bound how fast a dead leader is
	// noticed; LeaderLeaseTimeout how long a leader keeps serving without
	// hearing from a quorum.
	HeartbeatTimeout   Duration `json:"heartbeatTimeout"`
	ElectionTimeout    Duration `json:"electionTimeout"`
	LeaderLeaseTimeout Duration `json:"leaderLeaseTimeout"`
	// MaxTimeoutMultiplier bounds how far a server raises its own heartbeat
	// and election timeouts while it is starved of CPU (it measures how late
	// its goroutines run): a follower waits up to this many times longer
	// before it takes a silent leader for dead, and lowers the factor again
	// step by step once it runs on time. 1 turns this off; at most 10.
	MaxTimeoutMultiplier int `json:"maxTimeoutMultiplier"`
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one; SnapshotInterval how often that is checked.
	SnapshotThreshold uint64   `json:"snapshotThreshold"`
	SnapshotInterval  Duration `json:"snapshotInterval"`
	// TrailingLogs is how many entries stay in the log after a snapshot, so
	// a slightly lagging follower catches up without a snapshot transfer.
	TrailingLogs uint64 `json:"trailingLogs"`
	// ApplyTimeout bounds how long a write waits to be committed before it
	// is reported as having an unknown outcome.
	ApplyTimeout Duration `json:"applyTimeout"`
	// LogStore is where the raft log is kept: "wal", a write-ahead log with
	// one fsync per batch of writes, or "boltdb", raft.db as before. A data
	// dir whose log is in the other store has it moved on start.
	LogStore string `json:"logStore"`
}

// The raft log stores (raft.logStore); raftnode.LogStoreWAL and
// LogStoreBoltDB spell the same names.
const (
	RaftLogStoreWAL    = "wal"
	RaftLogStoreBoltDB = "boltdb"
)

// Store tunes the etcd API in front of the state machine.
type Store struct {
	// MaxRequestBytes is the largest request accepted (etcd's
	// --max-request-bytes).
	MaxRequestBytes int `json:"maxRequestBytes"`
	// MaxTxnOps is the most operations in one transaction (etcd's
	// --max-txn-ops).
	MaxTxnOps int `json:"maxTxnOps"`
	// HistoryRevisions bounds the history kept for watches and past reads:
	// the leader compacts everything older than this many revisions. 0 keeps
	// everything until a client compacts (kube-apiserver compacts every 5m).
	HistoryRevisions int64 `json:"historyRevisions"`
	// HistoryBytes bounds the same history by size: the leader also
	// compacts the oldest revisions while the retained events (key, value
	// and overhead each) account for more. 0 leaves the size unbounded.
	HistoryBytes int64 `json:"historyBytes"`
	// LeaseMinTTL is the shortest lease granted; shorter requests are raised
	// to it, as etcd does, so leases survive a leader election.
	LeaseMinTTL Duration `json:"leaseMinTTL"`
	// QuotaBytes is the store size (every retained version and lease, held
	// in memory on every server) past which writes that grow it are refused
	// with etcd's "mvcc: database space exceeded" and the NOSPACE alarm is
	// raised (etcd's --quota-backend-bytes). It must fit in memory.
	QuotaBytes int64 `json:"quotaBytes"`
}

// DefaultHistoryBytes bounds the store's event history, held in memory on
// every server, to 128 MiB.
const DefaultHistoryBytes = 128 << 20

// DefaultServerGOGC is the server's garbage collection target (see
// Server.GOGC).
const DefaultServerGOGC = 50

// DefaultStoreQuotaBytes is etcd's default backend quota, 2 GiB.
const DefaultStoreQuotaBytes = 2 << 30

// minStoreQuotaBytes is the smallest quota that leaves room for a cluster's
// own objects (RBAC bootstrap, leases, events).
const minStoreQuotaBytes = 1 << 20

// Log configures logging.
type Log struct {
	Level  string `json:"level"`  // debug, info, warn, error
	Format string `json:"format"` // text or json
}

// DefaultServer returns the configuration a server runs with when nothing is
// set.
func DefaultServer() Server {
	host, _ := os.Hostname()
	return Server{
		DataDir:         DefaultDataDir,
		NodeName:        strings.ToLower(host),
		BindAddress:     "0.0.0.0",
		BootstrapExpect: 1,
		SerfPort:        DefaultSerfPort,
		SupervisorPort:  DefaultSupervisorPort,
		ClusterCIDR:     DefaultClusterCIDR,
		// kube-controller-manager's --node-monitor-grace-period before 1.32
		// (the Kubernetes docs' figure); upstream now defaults to 50s.
		NodeMonitorGracePeriod: Duration{Duration: 40 * time.Second},
		APIServer: APIServer{
			Port:          DefaultAPIPort,
			ServiceCIDR:   "10.43.0.0/16",
			NodePortRange: "30000-32767",
			ClusterDomain: "cluster.local",
			PodSecurity:   DefaultPodSecurity(),
		},
		Plugins: Plugins{StartConcurrency: DefaultPluginStartConcurrency},
		Raft: Raft{
			// raftnode.DefaultConfig's figures, explained there; config
			// does not import core, and core/server's TestRaftDefaultsAgree
			// keeps the two equal.
			HeartbeatTimeout:     Duration{Duration: 500 * time.Millisecond},
			ElectionTimeout:      Duration{Duration: 500 * time.Millisecond},
			LeaderLeaseTimeout:   Duration{Duration: 500 * time.Millisecond},
			MaxTimeoutMultiplier: 4,
			SnapshotThreshold:    8192,
			SnapshotInterval:     Duration{Duration: 30 * time.Second},
			TrailingLogs:         10240,
			ApplyTimeout:         Duration{Duration: 10 * time.Second},
			LogStore:             RaftLogStoreWAL,
		},
		Store: Store{
			MaxRequestBytes:  1536 * 1024,
			MaxTxnOps:        128,
			HistoryRevisions: 100000,
			HistoryBytes:     DefaultHistoryBytes,
			LeaseMinTTL:      Duration{Duration: 5 * time.Second},
			QuotaBytes:       DefaultStoreQuotaBytes,
		},
		GOGC:      DefaultServerGOGC,
		Snapshots: Snapshots{Retention: DefaultSnapshotRetention},
		Log:       Log{Level: "info", Format: "text"},
		Agent:     DefaultNode(),
	}
}

// Validate checks every field and returns all problems at once, each naming
// the field (as its YAML key and flag) and what to do.
func (c *Server) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("dataDir (--data-dir)", "must not be empty; give a directory such as %s", DefaultDataDir)
	} else if !filepath.IsAbs(c.DataDir) {
		bad("dataDir (--data-dir)", "%q must be an absolute path", c.DataDir)
	}
	if c.NodeName == "" {
		bad("nodeName (--node-name)", "must not be empty; the hostname could not be read, so set it")
	} else if err := validDNSLabelish(c.NodeName); err != nil {
		bad("nodeName (--node-name)", "%q %v", c.NodeName, err)
	}
	if net.ParseIP(c.BindAddress) == nil {
		bad("bindAddress (--bind-address)", "%q is not an IP address", c.BindAddress)
	}
	if c.AdvertiseAddress != "" {
		if ip := net.ParseIP(c.AdvertiseAddress); ip == nil || ip.IsUnspecified() {
			bad("advertiseAddress (--advertise-address)", "%q is not a usable IP address", c.AdvertiseAddress)
		}
	}
	for _, hp := range []struct{ field, value string }{
		{"raftBind (--raft-bind)", c.RaftBind},
		{"etcdListen (--etcd-listen)", c.EtcdListen},
		{"debugListen (--debug-listen)", c.DebugListen},
	} {
		if hp.value == "" {
			continue
		}
		if err := validHostPort(hp.value); err != nil {
			bad(hp.field, "%q %v", hp.value, err)
		}
	}
	errs = append(errs, c.resolveTokens()...)
	errs = append(errs, c.etcdListenErrors()...)
	if c.BootstrapExpect < 1 {
		bad("bootstrapExpect (--bootstrap-expect)", "%d must be at least 1", c.BootstrapExpect)
	}
	if c.BootstrapExpect > 1 && c.BootstrapExpect%2 == 0 {
		bad("bootstrapExpect (--bootstrap-expect)", "%d servers tolerate no more failures than %d; use an odd number", c.BootstrapExpect, c.BootstrapExpect-1)
	}
	for _, p := range []struct {
		field string
		v     int
	}{{"serfPort (--serf-port)", c.SerfPort}, {"supervisorPort (--supervisor-port)", c.SupervisorPort}} {
		if p.v < 0 || p.v > 65535 {
			bad(p.field, "%d is not a port (0-65535)", p.v)
		}
	}
	for i, j := range c.Join {
		if j == "" {
			bad("join (--join)", "entry %d is empty", i)
		}
	}
	if _, err := ParseClusterCIDRs(c.ClusterCIDR); err != nil {
		bad("clusterCIDR (--cluster-cidr)", "%v", err)
	}
	if err := c.NodeMonitorGracePeriod.check(); err != nil {
		bad("nodeMonitorGracePeriod (--node-monitor-grace-period)", "%v", err)
	} else if c.NodeMonitorGracePeriod.Duration < time.Second {
		bad("nodeMonitorGracePeriod (--node-monitor-grace-period)", "%s is too short; use at least 1s (the default is 40s)", c.NodeMonitorGracePeriod.Duration)
	}
	errs = append(errs, c.APIServer.validate()...)
	errs = append(errs, c.LoadBalancer.validate(c.APIServer.ServiceCIDR, c.ClusterCIDR, c.nodeAddresses())...)
	errs = append(errs, c.Raft.validate()...)
	if c.Plugins.StartConcurrency < 1 {
		bad("plugins.startConcurrency (--plugin-start-concurrency)", "%d: at least 1 plugin must be allowed to start at a time (the default is %d)", c.Plugins.StartConcurrency, DefaultPluginStartConcurrency)
	}
	if c.GOGC < 10 || c.GOGC > 1000 {
		bad("gogc (--gogc)", "%d is outside 10..1000 percent; the default is %d (Go's own is 100)", c.GOGC, DefaultServerGOGC)
	}
	errs = append(errs, c.Store.validate(systemMemoryBytes())...)
	errs = append(errs, c.Snapshots.validate()...)
	if !c.DisableAgent {
		errs = append(errs, c.Agent.Validate("agent.")...)
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level (--log-level)", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format (--log-format)", "%q is not text or json", c.Log.Format)
	}
	return errors.Join(errs...)
}

func (a *APIServer) validate() []error {
	var errs []error
	if a.Port < 1 || a.Port > 65535 {
		errs = append(errs, fmt.Errorf("apiServer.port (--api-port): %d is not a port (1-65535)", a.Port))
	}
	if _, err := ParseServiceCIDRs(a.ServiceCIDR); err != nil {
		errs = append(errs, fmt.Errorf("apiServer.serviceCIDR (--service-cidr): %w", err))
	}
	if _, _, err := ParsePortRange(a.NodePortRange); err != nil {
		errs = append(errs, fmt.Errorf("apiServer.nodePortRange (--service-node-port-range): %w", err))
	}
	if a.ClusterDomain == "" || strings.HasPrefix(a.ClusterDomain, ".") || strings.HasSuffix(a.ClusterDomain, ".") {
		errs = append(errs, fmt.Errorf("apiServer.clusterDomain (--cluster-domain): %q must be a domain such as cluster.local", a.ClusterDomain))
	}
	errs = append(errs, a.PodSecurity.validate()...)
	return append(errs, a.validateEncryption()...)
}

func (r *Raft) validate() []error {
	var errs []error
	min := 5 * time.Millisecond
	for _, d := range []struct {
		field string
		v     Duration
	}{
		{"raft.heartbeatTimeout (--raft-heartbeat-timeout)", r.HeartbeatTimeout},
		{"raft.electionTimeout (--raft-election-timeout)", r.ElectionTimeout},
		{"raft.leaderLeaseTimeout (--raft-leader-lease-timeout)", r.LeaderLeaseTimeout},
		{"raft.snapshotInterval (--raft-snapshot-interval)", r.SnapshotInterval},
		{"raft.applyTimeout (--raft-apply-timeout)", r.ApplyTimeout},
	} {
		if err := d.v.check(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", d.field, err))
		} else if d.v.Duration < min {
			errs = append(errs, fmt.Errorf("%s: %s is too short; use at least %s", d.field, d.v.Duration, min))
		}
	}
	if r.LeaderLeaseTimeout.Duration > r.HeartbeatTimeout.Duration {
		errs = append(errs, fmt.Errorf("raft.leaderLeaseTimeout (--raft-leader-lease-timeout): %s must not exceed raft.heartbeatTimeout (%s)", r.LeaderLeaseTimeout.Duration, r.HeartbeatTimeout.Duration))
	}
	if r.MaxTimeoutMultiplier < 1 || r.MaxTimeoutMultiplier > 10 {
		errs = append(errs, fmt.Errorf("raft.maxTimeoutMultiplier (--raft-max-timeout-multiplier): %d is out of range; use 1 (off) to 10", r.MaxTimeoutMultiplier))
	}
	if r.SnapshotThreshold == 0 {
		errs = append(errs, errors.New("raft.snapshotThreshold (--raft-snapshot-threshold): must be at least 1"))
	}
	if r.LogStore != RaftLogStoreWAL && r.LogStore != RaftLogStoreBoltDB {
		errs = append(errs, fmt.Errorf("raft.logStore (--raft-log-store): %q is not a log store; use %s or %s", r.LogStore, RaftLogStoreWAL, RaftLogStoreBoltDB))
	}
	return errs
}

// RaftAddr is the raft transport's bind address.
func (c *Server) RaftAddr() string {
	if c.RaftBind != "" {
		return c.RaftBind
	}
	return net.JoinHostPort(c.BindAddress, strconv.Itoa(DefaultRaftPort))
}

// RaftAdvertise is the raft address other servers dial.
func (c *Server) RaftAdvertise() string {
	_, port, _ := net.SplitHostPort(c.RaftAddr())
	return net.JoinHostPort(c.AdvertiseIP(), port)
}

// nodeAddresses are the addresses this server's node is known by.
func (c *Server) nodeAddresses() []string {
	out := []string{c.AdvertiseIP()}
	if c.Agent.NodeIP != "" {
		out = append(out, c.Agent.NodeIP)
	}
	return append(out, c.Agent.NodeExternalIPs...)
}

// AdvertiseIP is the address others reach this server by: the advertise
// address, else a specific bind address, else this host's first global
// unicast IPv4 address (loopback when it has none).
func (c *Server) AdvertiseIP() string {
	if c.AdvertiseAddress != "" {
		return c.AdvertiseAddress
	}
	if ip := net.ParseIP(c.BindAddress); ip != nil && !ip.IsUnspecified() {
		return c.BindAddress
	}
	host, _, err := net.SplitHostPort(c.RaftBind)
	if ip := net.ParseIP(host); err == nil && ip != nil && !ip.IsUnspecified() {
		return host
	}
	return hostIP()
}

func hostIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "127.0.0.1"
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// EtcdSocket is the unix socket the etcd API is always served on; the
// embedded kube-apiserver talks to it.
func (c *Server) EtcdSocket() string { return filepath.Join(c.DataDir, "etcd.sock") }

// ParsePortRange parses "low-high".
func ParsePortRange(s string) (low, high int, err error) {
	lo, hi, ok := strings.Cut(s, "-")
	if ok {
		low, err = strconv.Atoi(lo)
		if err == nil {
			high, err = strconv.Atoi(hi)
		}
	}
	if !ok || err != nil || low < 1 || high > 65535 || low > high {
		return 0, 0, fmt.Errorf("%q is not a port range such as 30000-32767", s)
	}
	return low, high, nil
}

func validHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("is not host:port, such as 127.0.0.1:2379")
	}
	if net.ParseIP(host) == nil {
		return errors.New("must use an IP address as host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return errors.New("has an invalid port")
	}
	return nil
}

// validDNSLabelish accepts what Kubernetes accepts as a node name: a DNS
// subdomain (lowercase alphanumerics, '-' and '.', at most 253 characters).
func validDNSLabelish(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > 253 {
		return errors.New("is longer than 253 characters")
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.'
		if !ok {
			return fmt.Errorf("has %q at position %d; use lowercase letters, digits, '-' and '.'", r, i)
		}
	}
	if s[0] == '-' || s[0] == '.' || s[len(s)-1] == '-' || s[len(s)-1] == '.' {
		return errors.New("must start and end with a letter or digit")
	}
	return nil
}
