package storemetrics

import (
	"context"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Member is a gossip member as the collector counts it.
type Member struct{ Role, Status string }

// Sources are what the collector reads at each scrape; a nil one is
// left out.
type Sources struct {
	// Raft is raft's Stats() (state, term, commit_index, applied_index,
	// last_log_index, last_snapshot_index).
	Raft func() map[string]string
	// Store is the FSM's live keys, accounted bytes and revision.
	Store func() (keys int, bytes, revision int64)
	// Watchers is the number of open watches on the etcd API.
	Watchers func() int64
	// Members lists the gossip pool's members.
	Members func() []Member
	// WatchQueue is what watch streams have queued, and its caps.
	WatchQueue func() WatchQueue
	// History is the retained history's size and cap.
	History func() History
}

var (
	indexDesc = prometheus.NewDesc("keelson_raft_index", "Raft log indexes of this server, by kind (applied, commit, last_log, last_snapshot).", []string{"kind"}, nil)
	termDesc  = prometheus.NewDesc("keelson_raft_term", "This server's current raft term.", nil, nil)
	multDesc  = prometheus.NewDesc("keelson_raft_timeout_multiplier", "What this server's raft heartbeat and election timeouts are multiplied by while it follows, for its own scheduling delay (1: on time).", nil, nil)
	stateDesc = prometheus.NewDesc("keelson_raft_state", "1 for this server's raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.", []string{"state"}, nil)
	keysDesc  = prometheus.NewDesc("keelson_store_keys", "Live keys in the state machine.", nil, nil)
	bytesDesc = prometheus.NewDesc("keelson_store_size_bytes", "The state machine's accounted size (every retained version and lease), which the quota is checked against.", nil, nil)
	revDesc   = prometheus.NewDesc("keelson_store_revision", "The store's current revision.", nil, nil)
	watchDesc = prometheus.NewDesc("keelson_store_watchers", "Watches open on this server's etcd API.", nil, nil)
	memDesc   = prometheus.NewDesc("keelson_cluster_members", "Gossip members this server sees, by role and status.", []string{"role", "status"}, nil)
)

var raftStates = []string{"Leader", "Follower", "Candidate", "Shutdown"}

// Collector reads the store's state at each scrape and counts leader
// changes (Run).
type Collector struct {
	src           Sources
	leaderChanges prometheus.Counter
	lastLeader    atomic.Value // raft.ServerID
}

// NewCollector returns a Collector of src.
func NewCollector(src Sources) *Collector {
	return &Collector{src: src, leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keelson_raft_leader_changes_total",
		Help: "Leader changes this server has seen (a new leader, or none), the first leader included.",
	})}
}

// Run counts leader changes raft reports until ctx ends.
func (c *Collector) Run(ctx context.Context, r *raft.Raft) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	defer r.DeregisterObserver(obs)
	// The leader known before the observer was registered counts, as
	// etcd counts the first leader it sees.
	if _, id := r.LeaderWithID(); id != "" {
		c.leaderSeen(id)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-ch:
			c.leaderSeen(o.Data.(raft.LeaderObservation).LeaderID)
		}
	}
}

// leaderSeen counts a change of the leader raft reports.
func (c *Collector) leaderSeen(id raft.ServerID) {
	if prev, _ := c.lastLeader.Swap(id).(raft.ServerID); prev != id {
		c.leaderChanges.Inc()
	}
}

func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{indexDesc, termDesc, multDesc, stateDesc, keysDesc, bytesDesc, revDesc, watchDesc, memDesc} {
		ch <- d
	}
	for _, d := range watchDescs {
		ch <- d
	}
	c.leaderChanges.Describe(ch)
}

func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.leaderChanges.Collect(ch)
	if c.src.Raft != nil {
		collectRaft(ch, c.src.Raft())
	}
	if c.src.Store != nil {
		keys, size, rev := c.src.Store()
		ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(keys))
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.GaugeValue, float64(size))
		ch <- prometheus.MustNewConstMetric(revDesc, prometheus.GaugeValue, float64(rev))
	}
	if c.src.Watchers != nil {
		ch <- prometheus.MustNewConstMetric(watchDesc, prometheus.GaugeValue, float64(c.src.Watchers()))
	}
	if c.src.WatchQueue != nil {
		collectWatchQueue(ch, c.src.WatchQueue())
	}
	if c.src.History != nil {
		collectHistory(ch, c.src.History())
	}
	if c.src.Members != nil {
		counts := map[Member]int{}
		for _, m := range c.src.Members() {
			counts[m]++
		}
		for m, n := range counts {
			ch <- prometheus.MustNewConstMetric(memDesc, prometheus.GaugeValue, float64(n), m.Role, m.Status)
		}
	}
}

func collectRaft(ch chan<- prometheus.Metric, st map[string]string) {
	for kind, key := range map[string]string{"applied": "applied_index", "commit": "commit_index", "last_log": "last_log_index", "last_snapshot": "last_snapshot_index"} {
		if v, err := strconv.ParseUint(st[key], 10, 64); err == nil {
			ch <- prometheus.MustNewConstMetric(indexDesc, prometheus.GaugeValue, float64(v), kind)
		}
	}
	if v, err := strconv.ParseUint(st["term"], 10, 64); err == nil {
		ch <- prometheus.MustNewConstMetric(termDesc, prometheus.GaugeValue, float64(v))
	}
	if v, err := strconv.ParseUint(st["timeout_multiplier"], 10, 64); err == nil {
		ch <- prometheus.MustNewConstMetric(multDesc, prometheus.GaugeValue, float64(v))
	}
	for _, s := range raftStates {
		v := 0.0
		if st["state"] == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, s)
	}
}
