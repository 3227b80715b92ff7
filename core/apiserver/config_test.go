package apiserver

import (
	"slices"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/pki"
)

func testBundle() *pki.Bundle {
	p := func(n string) pki.Pair {
		return pki.Pair{CertFile: "/d/tls/" + n + ".crt", KeyFile: "/d/tls/" + n + ".key"}
	}
	return &pki.Bundle{
		Dir: "/d/tls", CA: p("ca"), Serving: p("apiserver"), Admin: p("admin"), KubeletClient: p("kubelet"),
		FrontProxyCA: p("fpca"), FrontProxyClient: p("fpc"), ServiceAccountKey: "/d/tls/sa.key", ServiceAccountPublicKey: "/d/tls/sa.pub",
		ClientCA: "/d/tls/client-ca.crt",
	}
}

func TestArgs(t *testing.T) {
	base := Config{DataDir: "/d", EtcdServers: []string{"unix:///d/etcd.sock"}, Bundle: testBundle()}
	tests := []struct {
		name    string
		mutate  func(*Config)
		want    []string
		notWant []string
	}{
		{
			name: "defaults",
			want: []string{
				"--bind-address=0.0.0.0", "--secure-port=6443", "--service-cluster-ip-range=10.43.0.0/16",
				"--service-node-port-range=30000-32767", "--etcd-servers=unix:///d/etcd.sock", "--storage-backend=etcd3",
				"--authorization-mode=Node,RBAC", "--anonymous-auth=false", "--enable-admission-plugins=NodeRestriction",
				"--allow-privileged=true", "--profiling=false", "--enable-bootstrap-token-auth=false",
				"--shutdown-send-retry-after=true",
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--api-audiences=https://kubernetes.default.svc.cluster.local",
				"--service-account-key-file=/d/tls/sa.pub", "--service-account-signing-key-file=/d/tls/sa.key",
				"--client-ca-file=/d/tls/client-ca.crt", "--tls-cert-file=/d/tls/apiserver.crt", "--tls-private-key-file=/d/tls/apiserver.key",
				"--kubelet-client-certificate=/d/tls/kubelet.crt", "--kubelet-client-key=/d/tls/kubelet.key",
				"--kubelet-certificate-authority=/d/tls/ca.crt",
				"--kubelet-preferred-address-types=InternalIP,Hostname,InternalDNS,ExternalDNS,ExternalIP",
				"--requestheader-client-ca-file=/d/tls/fpca.crt", "--requestheader-allowed-names=front-proxy-client",
				"--proxy-client-cert-file=/d/tls/fpc.crt", "--proxy-client-key-file=/d/tls/fpc.key", "--enable-aggregator-routing=true",
				"--cert-dir=/d/apiserver",
			},
			notWant: []string{"--advertise-address", "--encryption-provider-config"},
		},
		{
			name:   "secrets encrypted at rest, reloaded on change",
			mutate: func(c *Config) { c.EncryptionConfig = "/d/tls/encryption-config.yaml" },
			want: []string{"--encryption-provider-config=/d/tls/encryption-config.yaml",
				"--encryption-provider-config-automatic-reload=true"},
		},
		{
			name: "custom network and domain",
			mutate: func(c *Config) {
				c.BindAddress, c.AdvertiseAddress, c.SecurePort = "192.0.2.1", "192.0.2.1", 7443
				c.ServiceCIDR, c.NodePortRange, c.ClusterDomain = "10.96.0.0/12,fd00::/108", "31000-31999", "corp.example"
				c.EtcdServers = []string{"http://127.0.0.1:2379", "http://127.0.0.2:2379"}
			},
			want: []string{
				"--bind-address=192.0.2.1", "--advertise-address=192.0.2.1", "--secure-port=7443",
				"--service-cluster-ip-range=10.96.0.0/12,fd00::/108", "--service-node-port-range=31000-31999",
				"--service-account-issuer=https://kubernetes.default.svc.corp.example",
				"--etcd-servers=http://127.0.0.1:2379,http://127.0.0.2:2379",
			},
		},
		{
			name: "extra args add and override",
			mutate: func(c *Config) {
				c.ExtraArgs = map[string]string{"--enable-admission-plugins": "NodeRestriction,AlwaysPullImages", "audit-log-path": "/d/audit.log"}
			},
			want: []string{"--enable-admission-plugins=NodeRestriction,AlwaysPullImages", "--audit-log-path=/d/audit.log"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			c = c.withDefaults()
			if err := c.validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			args := c.args()
			for _, w := range tc.want {
				if !slices.Contains(args, w) {
					t.Errorf("args lack %s\nargs: %v", w, args)
				}
			}
			for _, nw := range tc.notWant {
				if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, nw) }) {
					t.Errorf("args contain %s\nargs: %v", nw, args)
				}
			}
			seen := map[string]bool{}
			var names []string
			for _, a := range args {
				name, _, _ := strings.Cut(a, "=")
				if seen[name] {
					t.Errorf("flag %s given twice", name)
				}
				seen[name] = true
				names = append(names, name)
			}
			if !slices.IsSorted(names) {
				t.Errorf("args not sorted by flag name: %v", args)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base := Config{DataDir: "/d", EtcdServers: []string{"http://127.0.0.1:2379"}, Bundle: testBundle()}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"valid", func(*Config) {}, ""},
		{"no etcd", func(c *Config) { c.EtcdServers = nil }, "EtcdServers"},
		{"no bundle", func(c *Config) { c.Bundle = nil }, "Bundle"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bad bind", func(c *Config) { c.BindAddress = "localhost" }, "BindAddress"},
		{"loopback advertise", func(c *Config) { c.AdvertiseAddress = "127.0.0.1" }, "AdvertiseAddress"},
		{"bad port", func(c *Config) { c.SecurePort = 70000 }, "SecurePort"},
		{"bad cidr", func(c *Config) { c.ServiceCIDR = "10.43.0.0/16,nonsense" }, "nonsense"},
		{"bad node ports", func(c *Config) { c.NodePortRange = "32767-30000" }, "NodePortRange"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.mutate(&c)
			err := c.withDefaults().validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error = %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestLocalHost(t *testing.T) {
	for bind, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "::1", "192.0.2.1": "192.0.2.1", "127.0.0.1": "127.0.0.1"} {
		if got := LocalHost(bind); got != want {
			t.Errorf("LocalHost(%q) = %q, want %q", bind, got, want)
		}
	}
}
