package raftnode

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.NodeID, c.DataDir, c.BindAddr = "n1", "/tmp/x", "127.0.0.1:0"
		return c
	}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring naming the field; empty = valid
	}{
		{"defaults are valid", func(*Config) {}, ""},
		{"advertise set", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:7000" }, ""},
		{"missing NodeID", func(c *Config) { c.NodeID = "" }, "NodeID"},
		{"missing DataDir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bad BindAddr", func(c *Config) { c.BindAddr = "nope" }, "BindAddr"},
		{"advertise port 0", func(c *Config) { c.AdvertiseAddr = "10.0.0.1:0" }, "AdvertiseAddr"},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, "AdvertiseAddr"},
		{"zero heartbeat", func(c *Config) { c.HeartbeatTimeout = 0 }, "HeartbeatTimeout"},
		{"leader wait defaults to apply timeout", func(c *Config) { c.LeaderWaitTimeout = 0 }, ""},
		{"negative leader wait", func(c *Config) { c.LeaderWaitTimeout = -time.Second }, "LeaderWaitTimeout"},
		{"zero apply timeout", func(c *Config) { c.ApplyTimeout = 0 }, "ApplyTimeout"},
		{"TLS without certificate", func(c *Config) { c.TLS = &tls.Config{} }, "TLS"},
		{"boltdb log store", func(c *Config) { c.LogStore = LogStoreBoltDB }, ""},
		{"unknown log store", func(c *Config) { c.LogStore = "rocksdb" }, "LogStore"},
		{"empty log store", func(c *Config) { c.LogStore = "" }, "LogStore"},
		{"tiny WAL segments", func(c *Config) { c.WALSegmentSize = 100 }, "WALSegmentSize"},
		{"zero threshold", func(c *Config) { c.SnapshotThreshold = 0 }, "SnapshotThreshold"},
		{"lease above heartbeat", func(c *Config) { c.LeaderLeaseTimeout = 2 * time.Second }, "LeaderLeaseTimeout"},
		{"election below heartbeat", func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond }, "ElectionTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	if _, err := New(Config{}, newKV()); err == nil || !strings.Contains(err.Error(), "NodeID") {
		t.Fatalf("New(Config{}) = %v, want a validation error naming NodeID", err)
	}
}

func TestNewFailsOnLockedDataDir(t *testing.T) {
	cfg := fastConfig(t, "n1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	defer n.Shutdown()
	if _, err := New(cfg, newKV()); err == nil || !strings.Contains(err.Error(), "raft.db") {
		t.Fatalf("second New on the same DataDir = %v, want an error naming raft.db", err)
	}
}
