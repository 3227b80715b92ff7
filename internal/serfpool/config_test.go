package serfpool

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeName, c.Token, c.RaftAddr = "s1", testToken, "10.0.0.1:8300"
		return c
	}
	if err := valid().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName"},
		{"bad name", func(c *Config) { c.NodeName = "a b" }, "NodeName"},
		{"bad role", func(c *Config) { c.Role = "boss" }, "Role"},
		{"server without raft", func(c *Config) { c.RaftAddr = "" }, "RaftAddr"},
		{"raft without port", func(c *Config) { c.RaftAddr = "10.0.0.1" }, "RaftAddr"},
		{"agent with raft", func(c *Config) { c.Role = RoleAgent }, "RaftAddr"},
		{"agent with expect", func(c *Config) { c.Role, c.RaftAddr, c.BootstrapExpect = RoleAgent, "", 3 }, "BootstrapExpect"},
		{"no token", func(c *Config) { c.Token = "" }, "Token"},
		{"bad bind", func(c *Config) { c.BindAddr = "1.2.3.4:http" }, "BindAddr"},
		{"bad join", func(c *Config) { c.Join = []string{"ok:1", ":99"} }, "entry 1 of Join"},
		{"negative expect", func(c *Config) { c.BootstrapExpect = -1 }, "BootstrapExpect"},
		{"zero probe", func(c *Config) { c.ProbeInterval = 0 }, "ProbeInterval"},
		{"timeout over interval", func(c *Config) { c.ProbeTimeout = 2 * c.ProbeInterval }, "ProbeTimeout"},
		{"retry max below min", func(c *Config) { c.RetryJoinMaxInterval = c.RetryJoinInterval / 2 }, "RetryJoinMaxInterval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.field)
			}
		})
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("zero Config validated")
	}
}

func TestSplitAddrDefaultsPort(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":       "10.0.0.1:7946",
		"10.0.0.1:8000":  "10.0.0.1:8000",
		"node-a":         "node-a:7946",
		"[fd00::1]":      "[fd00::1]:7946",
		"[fd00::1]:7000": "[fd00::1]:7000",
	} {
		hp, err := splitAddr(in, DefaultPort)
		if err != nil || hp.String() != want {
			t.Errorf("splitAddr(%q) = %v, %v; want %s", in, hp, err, want)
		}
	}
}

func TestLogBridge(t *testing.T) {
	log, lb := testLogger(t)
	std := newStdLogger(log)
	std.Printf("[WARN] memberlist: Refuting a suspect message (from: s2)")
	std.Printf("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=1.2.3.4:5")
	std.Printf("plain line")
	out := lb.String()
	for _, want := range []string{
		`level=WARN msg="Refuting a suspect message (from: s2)" component=memberlist`,
		`level=ERROR msg="failed to receive: No installed keys could decrypt the message from=1.2.3.4:5" component=memberlist hint=`,
		`level=INFO msg="plain line" component=serf`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}
