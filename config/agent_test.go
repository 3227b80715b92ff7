package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func parseAgent(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	c := DefaultAgent()
	AgentFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestLoadAgent(t *testing.T) {
	file := writeFile(t, `
server: https://10.0.0.1:6443
token: K10abc::secret
kubelet:
  port: 11250
  evictionHard: {memory.available: 200Mi}
registries:
  docker.io:
    mirrors: [https://file-mirror.local]
  quay.io:
    insecure: true
`)
	cfg, err := LoadAgent(DefaultAgent(), file, parseAgent(t, "--kubelet-port", "12250", "--registry-mirror", "docker.io=http://127.0.0.1:5000", "--insecure-registry", "reg.local:5000"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kubelet.Port != 12250 {
		t.Errorf("flag must win: kubelet port %d", cfg.Kubelet.Port)
	}
	if cfg.Kubelet.EvictionHard["memory.available"] != "200Mi" {
		t.Errorf("evictionHard from the file: %v", cfg.Kubelet.EvictionHard)
	}
	if m := cfg.Registries["docker.io"].Mirrors; len(m) != 1 || m[0] != "http://127.0.0.1:5000" {
		t.Errorf("a flag's mirror replaces the file's for its host: %v", m)
	}
	if !cfg.Registries["quay.io"].Insecure || !cfg.Registries["reg.local:5000"].Insecure {
		t.Errorf("insecure registries %v", cfg.Registries)
	}
	if cfg.Kubelet.MaxPods != 110 || cfg.Network.Bridge != "keelson0" || cfg.Network.ProxyMode != "" {
		t.Errorf("defaults lost: %+v", cfg.Node)
	}
}

func TestAgentValidationNamesTheField(t *testing.T) {
	cases := []struct {
		yaml, want string
	}{
		{"token: x\n", "server (--server)"},
		{"server: http://plain:6443\ntoken: x\n", "server (--server)"},
		{"server: https://a:6443\n", "token (--token)"},
		{"server: https://a:6443\ntoken: x\nkubelet: {evictionHard: {memory.available: lots}}\n", "kubelet.evictionHard (--eviction-hard)"},
		{"server: https://a:6443\ntoken: x\nnetwork: {bridge: a-name-far-too-long}\n", "network.bridge (--cni-bridge)"},
		{"server: https://a:6443\ntoken: x\nnetwork: {proxyMode: ipvs}\n", "network.proxyMode (--proxy-mode)"},
		{"server: https://a:6443\ntoken: x\nregistries: {docker.io: {mirrors: [ftp://x]}}\n", "registries.docker.io.mirrors"},
		{"server: https://a:6443\ntoken: x\nkubelet: {clusterDNS: [not-an-ip]}\n", "kubelet.clusterDNS (--cluster-dns)"},
		{"server: https://a:6443\ntoken: x\nkubelet: {bogus: 1}\n", `unknown field "bogus"`},
		{"server: https://a:6443\ntoken: x\ngossip: {probeInterval: 1s, probeTimeout: 2s}\n", "gossip.probeTimeout (--gossip-probe-timeout)"},
		{"server: https://a:6443\ntoken: x\ngossip: {suspicionMult: 0}\n", "gossip.suspicionMult (--gossip-suspicion-mult)"},
		{"server: https://a:6443\ntoken: x\ngossip: {probeInterval: soon}\n", "gossip.probeInterval (--gossip-probe-interval)"},
		{"server: https://a:6443\ntoken: x\npluginDir: plugins\n", "pluginDir (--plugin-dir)"},
	}
	for _, tc := range cases {
		_, err := LoadAgent(DefaultAgent(), writeFile(t, tc.yaml), nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.yaml, err, tc.want)
		}
	}
}

func TestServerAgentSection(t *testing.T) {
	cfg, err := LoadServer(writeFile(t, "agent:\n  kubelet:\n    port: 0\n  network:\n    bridge: br-test\n"), parse(t, "--cni-mtu", "1400"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Agent.Network.Bridge != "br-test" || cfg.Agent.Network.MTU != 1400 {
		t.Errorf("server's agent section: %+v", cfg.Agent.Network)
	}
	if _, err := LoadServer(writeFile(t, "agent:\n  network:\n    mtu: 5\n"), nil); err == nil || !strings.Contains(err.Error(), "agent.network.mtu (--cni-mtu)") {
		t.Errorf("invalid agent section: %v", err)
	}
	if _, err := LoadServer(writeFile(t, "disableAgent: true\nagent:\n  network:\n    mtu: 5\n"), nil); err != nil {
		t.Errorf("with disableAgent the agent section is not checked: %v", err)
	}
}
