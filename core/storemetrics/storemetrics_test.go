package storemetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

func TestCollector(t *testing.T) {
	state, keys, watchers := "Follower", 10, int64(2)
	c := NewCollector(Sources{
		Raft: func() map[string]string {
			return map[string]string{"state": state, "term": "3", "applied_index": "120", "commit_index": "121", "last_log_index": "121", "last_snapshot_index": "100"}
		},
		Store:    func() (int, int64, int64) { return keys, 4096, 120 },
		Watchers: func() int64 { return watchers },
		Members: func() []Member {
			return []Member{{"server", "alive"}, {"server", "alive"}, {"agent", "failed"}}
		},
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	want := `# HELP keelson_raft_state 1 for this server's raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.
# TYPE keelson_raft_state gauge
keelson_raft_state{state="Candidate"} 0
keelson_raft_state{state="Follower"} 1
keelson_raft_state{state="Leader"} 0
keelson_raft_state{state="Shutdown"} 0
# HELP keelson_cluster_members Gossip members this server sees, by role and status.
# TYPE keelson_cluster_members gauge
keelson_cluster_members{role="agent",status="failed"} 1
keelson_cluster_members{role="server",status="alive"} 2
# HELP keelson_raft_index Raft log indexes of this server, by kind (applied, commit, last_log, last_snapshot).
# TYPE keelson_raft_index gauge
keelson_raft_index{kind="applied"} 120
keelson_raft_index{kind="commit"} 121
keelson_raft_index{kind="last_log"} 121
keelson_raft_index{kind="last_snapshot"} 100
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keelson_raft_state", "keelson_cluster_members", "keelson_raft_index"); err != nil {
		t.Error(err)
	}
	// The gauges move with the store.
	state, keys, watchers = "Leader", 11, 5
	for name, v := range map[string]float64{"keelson_store_keys": 11, "keelson_store_watchers": 5, "keelson_raft_term": 3, "keelson_store_size_bytes": 4096} {
		if got := gathered(t, reg, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	c.leaderSeen("s1")
	c.leaderSeen("s1")
	c.leaderSeen("")
	c.leaderSeen("s2")
	if got := testutil.ToFloat64(c.leaderChanges); got != 3 {
		t.Errorf("leader changes %v, want 3 (s1, none, s2)", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func gathered(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

func TestSinkTurnsRaftTimersIntoHistograms(t *testing.T) {
	s := NewSink()
	Install(s)
	gometrics.MeasureSince([]string{"raft", "fsm", "apply"}, time.Now().Add(-3*time.Millisecond))
	gometrics.MeasureSince([]string{"raft", "commitTime"}, time.Now().Add(-time.Second))
	gometrics.MeasureSince([]string{"raft", "rpc", "appendEntries"}, time.Now()) // not kept
	gometrics.IncrCounter([]string{"raft", "state", "leader"}, 1)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	if n := testutil.CollectAndCount(s); n != len(timings) {
		t.Errorf("%d series, want %d", n, len(timings))
	}
	mfs, _ := reg.Gather()
	counts := map[string]uint64{}
	sums := map[string]float64{}
	for _, mf := range mfs {
		h := mf.GetMetric()[0].GetHistogram()
		counts[mf.GetName()], sums[mf.GetName()] = h.GetSampleCount(), h.GetSampleSum()
	}
	if counts["keelson_raft_apply_duration_seconds"] != 1 || counts["keelson_raft_commit_duration_seconds"] != 1 || counts["keelson_raft_snapshot_duration_seconds"] != 0 {
		t.Errorf("sample counts %v", counts)
	}
	if s := sums["keelson_raft_commit_duration_seconds"]; s < 0.9 || s > 5 {
		t.Errorf("a one-second commit recorded as %vs", s)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
