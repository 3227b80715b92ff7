package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/pki"
)

func TestPrintClusterReportWithAServerDown(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lag0, lag3 := uint64(0), uint64(3)
	failing := 12 * time.Second
	rep := &clusterReport{
		Raft: &ops.ClusterStatus{AnsweredBy: "s2", View: "s1", LeaderID: "s1", Term: 4, Servers: []ops.ServerReport{
			{Peer: ops.Peer{ID: "s1", Address: "10.0.0.1:7000", Voter: true, Leader: true, Contact: ops.ContactSelf, Gossip: "alive"},
				Status: &ops.ServerStatus{State: "Leader", Term: 4, AppliedIndex: 120, CommitIndex: 120, Version: "v0.9", StoreBytes: 3 << 20, QuotaBytes: 2 << 30,
					LastSnapshot: &ops.SnapshotInfo{Index: 100, Time: now.Add(-90 * time.Second)},
					Certificates: []pki.CertStatus{{Name: "cluster CA", NotAfter: now.Add(3650 * 24 * time.Hour)}, {Name: "API serving", NotAfter: now.Add(200 * 24 * time.Hour)}}},
				Lag: &lag0},
			{Peer: ops.Peer{ID: "s2", Address: "10.0.0.2:7000", Voter: true, Contact: ops.ContactOK, Gossip: "alive"},
				Status: &ops.ServerStatus{State: "Follower", Term: 4, AppliedIndex: 117, Version: "v0.9", StoreBytes: 3 << 20, TimeoutMultiplier: 3,
					Certificates: []pki.CertStatus{{Name: "server peer", NotAfter: now.Add(-time.Hour), Warning: "expired"}}},
				Lag: &lag3},
			{Peer: ops.Peer{ID: "s3", Address: "10.0.0.3:7000", Voter: true, Contact: ops.ContactFailing, SinceContact: &failing, Gossip: "failed"},
				Error: "no answer from 10.0.0.3:7000: connection refused"},
		}, Members: []ops.GossipMember{{Name: "w9", Role: "agent", Status: "alive"},
			{Name: "s1", Role: "server", Status: "alive", FeatureLevel: 2}, {Name: "s2", Role: "server", Status: "alive"}},
			FeatureLevel: 1},
		Kubernetes: &ops.KubeStatus{
			Nodes:   []ops.NodeStatus{{Name: "s3", Ready: "Unknown", Reason: "NodeStatusUnknown", Gossip: "failed", Version: "v1.37.2"}},
			Plugins: []ops.PluginState{{Name: "scheduler", State: "crash-looping", Restarts: 4, LastError: "exit status 2\nstack"}},
		},
	}
	var buf bytes.Buffer
	printClusterReport(&buf, rep, now)
	out := buf.String()
	for _, want := range []string{
		"SERVERS (leader s1, term 4, store feature level 1; last contact as s1 sees it)",
		"s2  10.0.0.2:7000  follower  yes    4     117      3    ok                     alive   v0.9     1 (none advertised)",
		"(reporting)            alive   v0.9     2",
		"s3  10.0.0.3:7000  down      yes    -     -        -    failing, last 12s ago  failed",
		"s3: no answer from 10.0.0.3:7000: connection refused",
		"s3    Unknown (NodeStatusUnknown)  failed",
		"w9    no Node object",
		"scheduler  -     crash-looping  no     4         exit status 2 stack",
		"3.0 MiB     2.0 GiB (0.1% used)  index 100, 1m30s ago  API serving in 200d (2026-07-20)",
		"server peer EXPIRED 1h0m0s ago",
		"s2: server peer (): expired",
		"s2: raft timeouts scaled x3: its own scheduling runs late",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("cluster status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "s1: raft timeouts") {
		t.Errorf("cluster status reports scaled timeouts for s1, whose multiplier is not above 1:\n%s", out)
	}
}
