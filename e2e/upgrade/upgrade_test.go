package upgrade

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/e2e/harness"
	"github.com/keelson/keelson/e2e/nodeagent"
	"github.com/keelson/keelson/fsm"
	"github.com/keelson/keelson/internal/testnet"
)

// maxGap is the longest the API or the Service may go without answering:
// a leader election (raft's election timeout and the new leader's
// barrier) with room for a loaded, shared 2-core machine. Anything longer
// is an outage the upgrade caused.
const maxGap = 20 * time.Second

// converge bounds every wait for the cluster to settle; a hang guard.
const converge = 3 * time.Minute

var agentNames = []string{"a1", "a2"}

// TestRollingUpgrade upgrades three servers and two agents from the
// previous release (BuildBase) to the binary under test, one member at a
// time, under a writing client and a serving Deployment.
func TestRollingUpgrade(t *testing.T) {
	nodeagent.Require(t)
	ha.RequireNetns(t)
	cur := harness.KeelsonBin(t)
	base := BuildBase(t)
	curVersion := versionOf(t, cur)
	if curVersion == base.Version {
		t.Fatalf("the binary under test reports the previous release's version %s", curVersion)
	}
	cidr, err := testnet.ClusterCIDR()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	u := &rollout{t: t, base: base, cur: cur, curVersion: curVersion, agentUpgraded: map[string]bool{}}
	u.c = ha.NewCluster(t, ha.Options{APIServer: true, Bin: base.Bin, Hosts: agentNames, Args: []string{"--cluster-cidr", cidr}})
	// Agents keep their service rules while they restart (as kube-proxy
	// does), so pods keep their Service across the agent's upgrade.
	u.agents = u.c.StartAgents(t, cidr, agentNames, ha.AgentOptions{Bin: base.Bin,
		Args: func(string) []string { return []string{"--keep-rules-on-shutdown"} }})
	t.Logf("previous release %s (%s) running after %s", base.Version, base.Commit[:12], time.Since(start).Round(time.Second))
	u.checkStatus(u.c.Servers[0], nil)

	port := u.deploy()
	pods := u.pods()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	traffic := u.startTraffic(ctx, port)

	for len(u.upgraded) < len(u.c.Servers) {
		u.upgradeServer(u.nextServer())
	}
	for _, name := range agentNames {
		u.upgradeAgent(name)
	}
	u.checkGate(true)
	u.restartUpgraded()
	stop()
	traffic.wait()

	u.checkTraffic(traffic)
	u.checkPodsAdopted(pods)
	u.c.CheckHashes(t, time.Minute)
	t.Logf("rolling upgrade %s -> %s done in %s; writes: %s; service: %s",
		base.Version, curVersion, time.Since(start).Round(time.Second), traffic.w.String(), traffic.describeProbes())
}

// rollout is one upgrade in progress.
type rollout struct {
	t          *testing.T
	c          *ha.Cluster
	agents     map[string]*nodeagent.Agent
	base       Base
	cur        string
	curVersion string
	upgraded   []*ha.Server
	// agentUpgraded says which agents run the binary under test.
	agentUpgraded map[string]bool
}

// nextServer is a server not yet upgraded that does not lead, or the
// leader when it is the last: followers first and the leader last, so
// leadership moves once, to an upgraded server.
func (u *rollout) nextServer() (next *ha.Server) {
	leader, term := u.c.WaitLeader(u.t, time.Minute, nil)
	defer func() { u.t.Logf("leader %s, term %d: upgrading %s next", leader.Name, term, next.Name) }()
	for _, s := range u.c.Servers {
		if s.Bin() == u.cur {
			continue
		}
		if next == nil || next == leader {
			next = s
		}
	}
	return next
}

// upgradeServer stops s gracefully, swaps its binary, starts it, waits
// until the cluster is healthy again with s on the new version, and checks
// the feature gate in the mixed cluster.
func (u *rollout) upgradeServer(s *ha.Server) {
	t := u.t
	t.Helper()
	began := time.Now()
	s.Stop(t, time.Minute)
	stopped := time.Now()
	if stopTimedOut(s) {
		t.Logf("note: %s on the previous release stopped only after kube-apiserver's 30 s stop limit (fixed since: --shutdown-send-retry-after)", s.Name)
	}
	s.SetBin(u.cur)
	s.Start(t)
	ready := time.Now()
	u.upgraded = append(u.upgraded, s)
	u.waitHealthy(s)
	leader, term := u.c.WaitLeader(t, time.Minute, nil)
	t.Logf("upgraded server %s (%d of %d): stopped in %s, ready in %s, cluster healthy %s later; leader %s, term %d",
		s.Name, len(u.upgraded), len(u.c.Servers), stopped.Sub(began).Round(time.Millisecond),
		ready.Sub(stopped).Round(time.Millisecond), time.Since(ready).Round(time.Millisecond), leader.Name, term)
	u.checkGate(len(u.upgraded) == len(u.c.Servers))
}

// upgradeAgent restarts an agent on the new binary and waits for its
// Node to be Ready and report the new version.
func (u *rollout) upgradeAgent(name string) {
	t := u.t
	t.Helper()
	began := time.Now()
	a := u.agents[name]
	a.Stop()
	a.SetBin(u.cur)
	a.Start(t)
	u.agentUpgraded[name] = true
	s := u.upgraded[0]
	harness.Eventually(t, converge, "node "+name+" Ready on "+u.curVersion, func() (bool, string) {
		r, err := clusterStatus(s)
		if err != nil {
			return false, err.Error()
		}
		if r.Kubernetes == nil {
			return false, "no Kubernetes part: " + r.KubernetesError
		}
		for _, n := range r.Kubernetes.Nodes {
			if n.Name == name {
				return n.Ready == "True" && strings.HasSuffix(n.Version, "keelson."+u.curVersion),
					fmt.Sprintf("ready %s, version %s, gossip %s", n.Ready, n.Version, n.Gossip)
			}
		}
		return false, "no node " + name
	})
	t.Logf("upgraded agent %s in %s (from %s)", name, time.Since(began).Round(time.Second), began.UTC().Format("15:04:05.000"))
	u.checkStatus(s, nil)
}

// waitHealthy waits until cluster status, asked through s, shows every
// server answering with the leader's log applied and the versions each
// runs, then checks the versions and feature levels shown.
func (u *rollout) waitHealthy(s *ha.Server) {
	t := u.t
	t.Helper()
	var last *report
	harness.Eventually(t, converge, "a healthy cluster after upgrading "+s.Name, func() (bool, string) {
		r, err := clusterStatus(s)
		if err != nil {
			return false, err.Error()
		}
		last = r
		// A server just restarted learns the others' feature levels from
		// their gossip tags a moment after raft is healthy again; its
		// feature gate counts an unknown level as 1 until then.
		return healthy(r) && u.levelsKnown(s, r), describe(r)
	})
	u.checkStatus(s, last)
}

// levelsKnown reports whether cluster status through s (an upgraded
// server; the old release shows no levels) shows every server's gossip
// member with the store feature level its binary has.
func (u *rollout) levelsKnown(s *ha.Server, r *report) bool {
	if s.Bin() != u.cur {
		return true
	}
	for _, srv := range u.c.Servers {
		level := u.base.FeatureLevel
		if srv.Bin() == u.cur {
			level = fsm.FeatureLevel
		}
		if m := member(r, srv.Name); m == nil || m.FeatureLevel != level {
			return false
		}
	}
	return true
}

// checkGate proposes, through an upgraded server, one request per raft
// command type above level 1: those above the level every server
// advertises must be refused by the feature gate while a server of the
// previous release remains, and work once all are upgraded (and be
// applied by every server: none halts, the hashes agree at the end).
func (u *rollout) checkGate(all bool) {
	t := u.t
	t.Helper()
	allowed := fsm.FeatureLevel
	if !all {
		allowed = min(max(u.base.FeatureLevel, 1), fsm.FeatureLevel)
	}
	via := u.upgraded[len(u.upgraded)-1]
	for typ := range 256 {
		level := fsm.CommandLevel(byte(typ))
		if level <= 1 {
			continue
		}
		req, ok := gatedRequests[byte(typ)]
		if !ok {
			t.Fatalf("raft command type %d (level %d) has no request in gatedRequests: add one that proposes it, so the upgrade test checks its gate", typ, level)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := req(ctx, via.Client())
		cancel()
		switch {
		case level <= allowed && err != nil:
			t.Errorf("command type %d (level %d, cluster at %d) through %s: %v", typ, level, allowed, via.Name, err)
		case level > allowed && (err == nil || !strings.Contains(err.Error(), "needs feature level")):
			t.Errorf("command type %d (level %d) through %s with a server at level %d: want the feature gate's refusal, got %v",
				typ, level, via.Name, allowed, err)
		default:
			t.Logf("feature gate: command type %d (level %d) through %s, cluster at level %d: %v", typ, level, via.Name, allowed, errOrOK(err))
		}
	}
	for _, s := range u.c.Servers {
		if !s.Running() {
			t.Fatalf("%s exited after the gated commands (a command it cannot apply reached it?)", s.Name)
		}
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "applied"
	}
	return "refused: " + err.Error()
}

// upgradedOrFirst is an upgraded server, or the first before any is.
func (u *rollout) upgradedOrFirst() *ha.Server {
	if len(u.upgraded) > 0 {
		return u.upgraded[len(u.upgraded)-1]
	}
	return u.c.Servers[0]
}

// stopWarning is what a server logs when kube-apiserver outlived its stop
// limit and the store was stopped under it.
const stopWarning = "kube-apiserver did not stop in time"

// stopTimedOut says whether s's last process logged stopWarning.
func stopTimedOut(s *ha.Server) bool {
	b, err := os.ReadFile(s.LogPath())
	return err == nil && strings.Contains(string(b), stopWarning)
}

// restartUpgraded restarts an upgraded follower, under the same traffic,
// as an operator does after a configuration change: it must stop cleanly
// (kube-apiserver done before the store, open watches notwithstanding) and
// come back healthy.
func (u *rollout) restartUpgraded() {
	t := u.t
	t.Helper()
	// The agents' --server (the first server) holds their watches, what
	// kept a stopping server waiting.
	leader, _ := u.c.WaitLeader(t, time.Minute, nil)
	s := u.c.Servers[0]
	if s == leader {
		s = u.c.Followers(leader)[0]
	}
	began := time.Now()
	s.Stop(t, time.Minute)
	stopped := time.Now()
	if stopTimedOut(s) {
		t.Errorf("%s on %s: SIGTERM ended with %q (log %s)", s.Name, u.curVersion, stopWarning, s.LogPath())
	}
	s.Start(t)
	u.waitHealthy(s)
	t.Logf("restarted %s on %s: stopped in %s, healthy %s later (from %s)", s.Name, u.curVersion,
		stopped.Sub(began).Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond), began.UTC().Format("15:04:05.000"))
}
