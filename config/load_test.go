package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func parse(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c := DefaultServer()
	ServerFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "keelson.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadServerPrecedence(t *testing.T) {
	file := writeFile(t, `
dataDir: /srv/keelson
bindAddress: 10.0.0.5
raft:
  electionTimeout: 3s
apiServer:
  extraArgs: {v: "2"}
`)
	cfg, err := LoadServer(file, parse(t, "--bind-address", "127.0.0.2", "--kube-apiserver-arg", "a=b,c=d"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/keelson" {
		t.Errorf("dataDir from file: got %q", cfg.DataDir)
	}
	if cfg.BindAddress != "127.0.0.2" {
		t.Errorf("flag must win over file: bindAddress = %q", cfg.BindAddress)
	}
	if cfg.Raft.ElectionTimeout.Duration != 3*time.Second {
		t.Errorf("electionTimeout from file: got %s", cfg.Raft.ElectionTimeout)
	}
	if cfg.Raft.HeartbeatTimeout != DefaultServer().Raft.HeartbeatTimeout {
		t.Errorf("unset field must keep its default, got %s", cfg.Raft.HeartbeatTimeout)
	}
	if got := cfg.APIServer.ExtraArgs; len(got) != 2 || got["a"] != "b" || got["c"] != "d" {
		t.Errorf("map flag must replace the file's map: got %v", got)
	}
	if cfg.RaftAddr() != "127.0.0.2:6444" {
		t.Errorf("raft address follows bind address: got %s", cfg.RaftAddr())
	}
}

func TestLoadServerErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, file string
		args       []string
		want       []string
	}{
		{"unknown key", "dataDri: /x\n", nil, []string{`unknown field "dataDri"`}},
		{"bad duration", "raft:\n  electionTimeout: soon\n", nil, []string{`raft.electionTimeout (--raft-election-timeout): invalid duration soon`}},
		{"relative data dir", "", []string{"--data-dir", "rel"}, []string{"dataDir (--data-dir)", "absolute"}},
		{"bad bind", "", []string{"--bind-address", "localhost"}, []string{"bindAddress (--bind-address)"}},
		{"bad cidr", "", []string{"--service-cidr", "10.0.0.0"}, []string{"apiServer.serviceCIDR (--service-cidr)"}},
		{"service cidr of one family twice", "", []string{"--service-cidr", "10.43.0.0/16,10.44.0.0/16"}, []string{"apiServer.serviceCIDR (--service-cidr)", "same IP family"}},
		{"ipv6 service cidr too wide", "", []string{"--service-cidr", "10.43.0.0/16,fd43::/64"}, []string{"apiServer.serviceCIDR (--service-cidr)", "wider than /108"}},
		{"bad port range", "", []string{"--service-node-port-range", "5-1"}, []string{"apiServer.nodePortRange"}},
		{"node name", "", []string{"--node-name", "Upper"}, []string{"nodeName (--node-name)"}},
		{"raft log store flag", "", []string{"--raft-log-store", "bolt"}, []string{`raft.logStore (--raft-log-store): "bolt" is not a log store; use wal or boltdb`}},
		{"raft log store in file", "raft:\n  logStore: WAL\n", nil, []string{`raft.logStore (--raft-log-store): "WAL"`}},
		{"timeout multiplier", "", []string{"--raft-max-timeout-multiplier", "0"}, []string{"raft.maxTimeoutMultiplier (--raft-max-timeout-multiplier): 0 is out of range; use 1 (off) to 10"}},
		{"plugin start concurrency", "", []string{"--plugin-start-concurrency", "0"}, []string{"plugins.startConcurrency (--plugin-start-concurrency): 0"}},
		{"lease over heartbeat", "", []string{"--raft-leader-lease-timeout", "5s"}, []string{"raft.leaderLeaseTimeout"}},
		{"two errors at once", "", []string{"--max-txn-ops", "0", "--api-port", "0"}, []string{"store.maxTxnOps", "apiServer.port"}},
		{"etcd listen", "", []string{"--etcd-listen", "nohost"}, []string{"etcdListen (--etcd-listen)"}},
		{"cluster cidr", "", []string{"--cluster-cidr", "10.42.0.0"}, []string{"clusterCIDR (--cluster-cidr)", "not a CIDR"}},
		{"cluster cidr host bits", "clusterCIDR: 10.42.1.0/16\n", nil, []string{"clusterCIDR (--cluster-cidr)", "10.42.0.0/16"}},
		{"grace period", "", []string{"--node-monitor-grace-period", "10ms"}, []string{"nodeMonitorGracePeriod (--node-monitor-grace-period)", "at least 1s"}},
		{"snapshot schedule", "", []string{"--snapshot-schedule", "every day"}, []string{`snapshots.schedule (--snapshot-schedule): "every day"`, "@daily"}},
		{"snapshot schedule in file", "snapshots:\n  schedule: \"61 * * * *\"\n", nil, []string{`snapshots.schedule (--snapshot-schedule): "61 * * * *"`}},
		{"snapshot retention", "", []string{"--snapshot-retention", "0"}, []string{"snapshots.retention (--snapshot-retention): 0 keeps no snapshot"}},
		{"history bytes", "", []string{"--history-bytes", "-1"}, []string{"store.historyBytes (--history-bytes): -1 must be 0 (no size bound) or positive"}},
		{"store quota flag", "", []string{"--store-quota-bytes", "512"}, []string{"store.quotaBytes (--store-quota-bytes): 512 is below the minimum"}},
		{"store quota in file", "store:\n  quotaBytes: 1099511627776000\n", nil, []string{"store.quotaBytes (--store-quota-bytes)", "memory"}},
		{"grace period in file", "nodeMonitorGracePeriod: soon\n", nil, []string{"nodeMonitorGracePeriod (--node-monitor-grace-period): invalid duration soon"}},
		{"pod security level", "apiServer:\n  podSecurity:\n    warn: strict\n", nil, []string{`apiServer.podSecurity.warn (--pod-security-warn): "strict" is not a level; use privileged, baseline or restricted`}},
		{"pod security flag", "", []string{"--pod-security-enforce", "Baseline"}, []string{"apiServer.podSecurity.enforce (--pod-security-enforce)"}},
		{"pool overlaps the service cidr", "", []string{"--load-balancer-pool", "lan=10.43.0.0/24"}, []string{"loadBalancer.pools[0].addresses[0] (--load-balancer-pool)", "overlaps apiServer.serviceCIDR (--service-cidr) 10.43.0.0/16"}},
		{"pool overlaps the cluster cidr", "", []string{"--load-balancer-pool", "lan=10.41.255.250-10.42.0.3"}, []string{"loadBalancer.pools[0].addresses[0]", "overlaps clusterCIDR (--cluster-cidr) 10.42.0.0/16"}},
		{"pool holds the node address", "", []string{"--advertise-address", "192.168.5.9", "--load-balancer-pool", "lan=192.168.5.0/24"}, []string{"loadBalancer.pools[0].addresses[0]", "contains 192.168.5.9, an address of this server's node"}},
		{"pool holds an external ip", "", []string{"--node-external-ip", "203.0.113.5", "--load-balancer-pool", "lan=203.0.113.0/28"}, []string{"contains 203.0.113.5"}},
		{"pool not a range", "", []string{"--load-balancer-pool", "lan=192.168.9.9-192.168.9.1"}, []string{"loadBalancer.pools[0].addresses[0]", "lower to a higher"}},
		{"pools overlap", "loadBalancer:\n  pools:\n  - {name: a, addresses: [192.168.9.0/28]}\n  - {name: a, addresses: [192.168.9.8/29]}\n", nil, []string{"loadBalancer.pools[1].name", "loadBalancer.pools[1].addresses[0]", "earlier pool"}},
		{"pool without addresses", "loadBalancer:\n  pools:\n  - {name: a, nodeSelector: {\"bad key\": x}}\n", nil, []string{"loadBalancer.pools[0].addresses", "loadBalancer.pools[0].nodeSelector"}},
		{"cloud provider", "", []string{"--cloud-provider", "aws"}, []string{"agent.cloudProvider (--cloud-provider)", `use "external"`}},
		{"external ip", "", []string{"--node-external-ip", "nope"}, []string{"agent.nodeExternalIPs (--node-external-ip)"}},
		{"pod security exemption", "", []string{"--pod-security-exempt-namespace", "Kube_System"}, []string{"apiServer.podSecurity.exemptNamespaces"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			_, err := LoadServer(path, parse(t, tc.args...))
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadBalancerPoolFlagReplacesTheFile(t *testing.T) {
	file := writeFile(t, "loadBalancer:\n  pools:\n  - {name: file, addresses: [192.168.9.0/28], nodeSelector: {edge: \"true\"}}\n")
	cfg, err := LoadServer(file, parse(t))
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.LoadBalancer.Pools; len(p) != 1 || p[0].NodeSelector["edge"] != "true" {
		t.Fatalf("pools from the file: %+v", p)
	}
	cfg, err = LoadServer(file, parse(t, "--load-balancer-pool", "lan=192.168.7.240/28,fd00:7::10-fd00:7::20", "--load-balancer-pool", "dmz=198.51.100.0/30"))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.LoadBalancer.Pools
	if len(p) != 2 || p[0].Name != "lan" || len(p[0].Addresses) != 2 || p[0].Addresses[1] != "fd00:7::10-fd00:7::20" || p[1].Name != "dmz" {
		t.Fatalf("pools from the flags: %+v", p)
	}
}

func TestPodSecurityFileKeepsOtherDefaults(t *testing.T) {
	cfg, err := LoadServer(writeFile(t, "apiServer:\n  podSecurity:\n    enforce: restricted\n"), parse(t))
	if err != nil {
		t.Fatal(err)
	}
	want := PodSecurity{Enforce: "restricted", Warn: "restricted", Audit: "restricted", ExemptNamespaces: []string{"kube-system"}}
	got := cfg.APIServer.PodSecurity
	if got.Enforce != want.Enforce || got.Warn != want.Warn || got.Audit != want.Audit || strings.Join(got.ExemptNamespaces, ",") != "kube-system" {
		t.Errorf("podSecurity: got %+v, want %+v", got, want)
	}
}

func TestDefaultServerIsValid(t *testing.T) {
	c := DefaultServer()
	c.NodeName = "node-1"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// A dual-stack service range is taken (dual-stack Services), and a pool
// overlapping its IPv6 half is refused.
func TestLoadServerDualStackServiceCIDR(t *testing.T) {
	args := []string{"--service-cidr", "10.43.0.0/16,fd43::/108", "--cluster-cidr", "10.42.0.0/16,fd42::/56", "--node-name", "n1"}
	cfg, err := LoadServer("", parse(t, args...))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIServer.ServiceCIDR != "10.43.0.0/16,fd43::/108" {
		t.Errorf("serviceCIDR = %q", cfg.APIServer.ServiceCIDR)
	}
	_, err = LoadServer("", parse(t, append(args, "--load-balancer-pool", "v6=fd43::/120")...))
	if err == nil || !strings.Contains(err.Error(), "overlaps apiServer.serviceCIDR (--service-cidr) fd43::/108") {
		t.Errorf("a pool inside the IPv6 service range: %v", err)
	}
}

// The example shipped beside the code must stay loadable and mean what it
// says.
func TestExampleServerConfigLoads(t *testing.T) {
	cfg, err := LoadServer("example-server.yaml", parse(t))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeName != "server-1" || cfg.BootstrapExpect != 3 || len(cfg.Join) != 1 || cfg.APIServer.ExtraArgs["audit-log-maxage"] != "7" {
		t.Fatalf("example config read as %+v", cfg)
	}
}

// A base from the environment is a default: the file and flags still win.
func TestLoadServerFromBase(t *testing.T) {
	base := DefaultServer()
	base.DataDir = "/srv/keelson"
	cfg, err := LoadServerFrom(base, "", parse(t))
	if err != nil || cfg.DataDir != "/srv/keelson" {
		t.Fatalf("base data dir: %q %v", cfg.DataDir, err)
	}
	cfg, err = LoadServerFrom(base, writeFile(t, "dataDir: /from/file\n"), parse(t))
	if err != nil || cfg.DataDir != "/from/file" {
		t.Fatalf("file over base: %q %v", cfg.DataDir, err)
	}
	cfg, err = LoadServerFrom(base, writeFile(t, "dataDir: /from/file\n"), parse(t, "--data-dir", "/from/flag"))
	if err != nil || cfg.DataDir != "/from/flag" {
		t.Fatalf("flag over file: %q %v", cfg.DataDir, err)
	}
}
