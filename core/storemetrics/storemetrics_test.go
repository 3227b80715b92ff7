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
			return map[string]string{"state": state, "term": "3", "applied_index": "120", "commit_index": "121", "last_log_index": "121", "last_snapshot_index": "100", "timeout_multiplier": "3"}
		},
		Store:    func() (int, int64, int64) { return keys, 4096, 120 },
		Watchers: func() int64 { return watchers },
		Members: func() []Member {
			return []Member{{"server", "alive"}, {"server", "alive"}, {"agent", "failed"}}
		},
		WatchQueue: func() WatchQueue {
			return WatchQueue{Events: 7, Bytes: 9000, Stalled: 1, Compacted: 2, WatchEvents: 4096, WatchBytes: 8 << 20, StreamBytes: 32 << 20}
		},
		History: func() History { return History{Bytes: 1 << 20, Limit: 128 << 20} },
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
# HELP keelson_raft_timeout_multiplier What this server's raft heartbeat and election timeouts are multiplied by while it follows, for its own scheduling delay (1: on time).
# TYPE keelson_raft_timeout_multiplier gauge
keelson_raft_timeout_multiplier 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keelson_raft_state", "keelson_cluster_members", "keelson_raft_index", "keelson_raft_timeout_multiplier"); err != nil {
		t.Error(err)
	}
	wantWatch := `# HELP keelson_store_watch_compacted_total Watches canceled with etcd's compacted error because history they needed was compacted (started, or fell, behind the retained window).
# TYPE keelson_store_watch_compacted_total counter
keelson_store_watch_compacted_total 2
# HELP keelson_store_watch_queue_limit_bytes Cap on the bytes one watch (scope=watch) or one stream of watches (scope=stream) may have queued.
# TYPE keelson_store_watch_queue_limit_bytes gauge
keelson_store_watch_queue_limit_bytes{scope="stream"} 3.3554432e+07
keelson_store_watch_queue_limit_bytes{scope="watch"} 8.388608e+06
# HELP keelson_store_watch_queued_events Watch events queued for clients and not yet written to their streams.
# TYPE keelson_store_watch_queued_events gauge
keelson_store_watch_queued_events 7
# HELP keelson_store_history_limit_bytes Size past which the leader compacts the oldest history (0: no size bound).
# TYPE keelson_store_history_limit_bytes gauge
keelson_store_history_limit_bytes 1.34217728e+08
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantWatch), "keelson_store_watch_compacted_total", "keelson_store_watch_queue_limit_bytes", "keelson_store_watch_queued_events", "keelson_store_history_limit_bytes"); err != nil {
		t.Error(err)
	}
	// The gauges move with the store.
	state, keys, watchers = "Leader", 11, 5
	for name, v := range map[string]float64{"keelson_store_keys": 11, "keelson_store_watchers": 5, "keelson_raft_term": 3, "keelson_store_size_bytes": 4096,
		"keelson_store_watch_queued_bytes": 9000, "keelson_store_watch_stalled": 1, "keelson_store_watch_queue_limit_events": 4096, "keelson_store_history_bytes": 1 << 20} {
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
