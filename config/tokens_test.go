package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func secretFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServerTokenFiles(t *testing.T) {
	server := secretFile(t, "K10"+strings.Repeat("ab", 32)+"::server-secret-0123456789abcdef\n")
	agent := secretFile(t, "agent-secret-9f8e7d6c5b4a39281706\n")
	cfg, err := LoadServer("", parse(t, "--token-file", server, "--agent-token-file", agent))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.Token, "::server-secret-0123456789abcdef") || cfg.AgentToken != "agent-secret-9f8e7d6c5b4a39281706" {
		t.Errorf("tokens from files: %q, %q", cfg.Token, cfg.AgentToken)
	}
	// The YAML keys work as well as the flags.
	cfg, err = LoadServer(writeFile(t, "tokenFile: "+server+"\nagentTokenFile: "+agent+"\n"), nil)
	if err != nil || cfg.AgentToken != "agent-secret-9f8e7d6c5b4a39281706" {
		t.Fatalf("tokens from YAML file keys: %q %v", cfg.AgentToken, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--token", "x-0123456789abcdef", "--token-file", server}, "token (--token) and tokenFile (--token-file): set only one"},
		{[]string{"--token-file", "/nonexistent/token"}, "tokenFile (--token-file): open /nonexistent/token"},
		{[]string{"--agent-token-file", secretFile(t, "\n")}, "agentTokenFile (--agent-token-file): "},
	} {
		_, err := LoadServer("", parse(t, tc.args...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

func TestAgentTokenFile(t *testing.T) {
	tok := secretFile(t, "K10"+strings.Repeat("cd", 32)+"::agent-secret-0123456789\n")
	cfg, err := LoadAgent(DefaultAgent(), "", parseAgent(t, "--server", "https://10.0.0.1:6443", "--token-file", tok))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(cfg.Token, "::agent-secret-0123456789") {
		t.Errorf("agent token from file: %q", cfg.Token)
	}
	// Validating again (the server's embedded agent does) keeps it.
	if err := cfg.Validate(); err != nil {
		t.Errorf("second Validate: %v", err)
	}
	_, err = LoadAgent(DefaultAgent(), "", parseAgent(t, "--server", "https://10.0.0.1:6443", "--token", "K10x::y", "--token-file", tok))
	if err == nil || !strings.Contains(err.Error(), "set only one") {
		t.Errorf("--token with --token-file: %v", err)
	}
}

func TestEtcdListenNeedsClientCertsOffLoopback(t *testing.T) {
	ca := secretFile(t, "-----BEGIN CERTIFICATE-----\n")
	for _, tc := range []struct {
		args []string
		want string // "" valid
	}{
		{[]string{"--etcd-listen", "127.0.0.1:2379"}, ""},
		{[]string{"--etcd-listen", "[::1]:2379"}, ""},
		{[]string{"--etcd-listen", "10.0.0.5:2379"}, "etcdListen (--etcd-listen): \"10.0.0.5:2379\" is not a loopback address"},
		{[]string{"--etcd-listen", "0.0.0.0:2379"}, "--etcd-client-ca"},
		{[]string{"--etcd-listen", "10.0.0.5:2379", "--etcd-client-ca", ca}, ""},
		{[]string{"--etcd-listen", "10.0.0.5:2379", "--etcd-client-ca", "/nonexistent/ca.crt"}, "etcdClientCA (--etcd-client-ca)"},
		{[]string{"--etcd-client-ca", ca}, "set only with etcdListen"},
	} {
		_, err := LoadServer("", parse(t, tc.args...))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v, want valid", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
