package ha

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Fault is something that goes wrong with a cluster and is then repaired.
type Fault interface {
	// Name is a short label for logs.
	Name() string
	// Inject breaks the cluster and describes what it did.
	Inject(t testing.TB, c *Cluster) string
	// Heal repairs what Inject broke.
	Heal(t testing.TB, c *Cluster)
	// DeposesLeader says whether the majority must elect a new leader
	// while the fault lasts.
	DeposesLeader() bool
}

// KillLeader kills the leader with SIGKILL; Heal restarts it on its data.
type KillLeader struct{ victim *Server }

func (f *KillLeader) Name() string        { return "kill-9-leader" }
func (f *KillLeader) DeposesLeader() bool { return true }
func (f *KillLeader) Inject(t testing.TB, c *Cluster) string {
	f.victim, _ = c.WaitLeader(t, time.Minute, nil)
	f.victim.Kill()
	return "kill -9 leader " + f.victim.Name
}
func (f *KillLeader) Heal(t testing.TB, c *Cluster) { f.victim.Start(t) }

// KillFollower kills a follower with SIGKILL; Heal restarts it.
type KillFollower struct{ victim *Server }

func (f *KillFollower) Name() string        { return "kill-9-follower" }
func (f *KillFollower) DeposesLeader() bool { return false }
func (f *KillFollower) Inject(t testing.TB, c *Cluster) string {
	l, _ := c.WaitLeader(t, time.Minute, nil)
	f.victim = c.Followers(l)[0]
	f.victim.Kill()
	return "kill -9 follower " + f.victim.Name
}
func (f *KillFollower) Heal(t testing.TB, c *Cluster) { f.victim.Start(t) }

// PauseLeader stops the leader with SIGSTOP (past the election timeout, for
// as long as the fault lasts); Heal continues it with SIGCONT.
type PauseLeader struct{ victim *Server }

func (f *PauseLeader) Name() string        { return "sigstop-leader" }
func (f *PauseLeader) DeposesLeader() bool { return true }
func (f *PauseLeader) Inject(t testing.TB, c *Cluster) string {
	f.victim, _ = c.WaitLeader(t, time.Minute, nil)
	f.victim.Pause(t)
	return "SIGSTOP leader " + f.victim.Name
}
func (f *PauseLeader) Heal(t testing.TB, c *Cluster) { f.victim.Resume(t) }

// IsolateLeader cuts the leader off from every other server, both ways.
// Clients still reach it.
type IsolateLeader struct{ victim *Server }

func (f *IsolateLeader) Name() string        { return "partition-leader" }
func (f *IsolateLeader) DeposesLeader() bool { return true }
func (f *IsolateLeader) Inject(t testing.TB, c *Cluster) string {
	RequireIptables(t)
	f.victim, _ = c.WaitLeader(t, time.Minute, nil)
	c.Block(t, f.victim, true, true, c.Followers(f.victim))
	return "two-way partition: leader " + f.victim.Name + " | " + names(c.Followers(f.victim))
}
func (f *IsolateLeader) Heal(t testing.TB, c *Cluster) { c.Unblock(t, f.victim) }

// IsolateFollower cuts one follower (a minority) off from the majority,
// both ways; the leader keeps its quorum.
type IsolateFollower struct{ victim *Server }

func (f *IsolateFollower) Name() string        { return "partition-minority" }
func (f *IsolateFollower) DeposesLeader() bool { return false }
func (f *IsolateFollower) Inject(t testing.TB, c *Cluster) string {
	RequireIptables(t)
	l, _ := c.WaitLeader(t, time.Minute, nil)
	f.victim = c.Followers(l)[0]
	c.Block(t, f.victim, true, true, c.Followers(f.victim))
	return "two-way partition: minority " + f.victim.Name + " | majority " + names(c.Followers(f.victim)) + " (leader " + l.Name + ")"
}
func (f *IsolateFollower) Heal(t testing.TB, c *Cluster) { c.Unblock(t, f.victim) }

// OneWayLeader drops, in the leader's namespace, what the leader sends to
// the followers, while it still receives from them: the followers hear no
// heartbeats and elect a new leader whose messages reach the old one.
type OneWayLeader struct{ victim *Server }

func (f *OneWayLeader) Name() string        { return "one-way-partition-leader" }
func (f *OneWayLeader) DeposesLeader() bool { return true }
func (f *OneWayLeader) Inject(t testing.TB, c *Cluster) string {
	RequireIptables(t)
	f.victim, _ = c.WaitLeader(t, time.Minute, nil)
	c.Block(t, f.victim, false, true, c.Followers(f.victim))
	return "one-way partition: leader " + f.victim.Name + " -> " + names(c.Followers(f.victim)) + " dropped, the other way open"
}
func (f *OneWayLeader) Heal(t testing.TB, c *Cluster) { c.Unblock(t, f.victim) }

// FillLeaderDisk fills the leader's data dir (a tmpfs of the cluster's
// DiskSize) until writes fail with ENOSPC; Heal deletes the filler.
type FillLeaderDisk struct {
	victim *Server
	filler string
}

func (f *FillLeaderDisk) Name() string        { return "full-disk-leader" }
func (f *FillLeaderDisk) DeposesLeader() bool { return false }
func (f *FillLeaderDisk) Inject(t testing.TB, c *Cluster) string {
	f.victim, _ = c.WaitLeader(t, time.Minute, nil)
	f.filler = filepath.Join(f.victim.DataDir(), "filler")
	// dd stops at ENOSPC and says so; that is the point.
	out, _ := exec.Command("dd", "if=/dev/zero", "of="+f.filler, "bs=1M").CombinedOutput()
	st, err := os.Stat(f.filler)
	if err != nil {
		t.Fatalf("filling %s: %v: %s", f.filler, err, out)
	}
	return fmt.Sprintf("filled leader %s's data disk (%d MiB filler)", f.victim.Name, st.Size()>>20)
}
func (f *FillLeaderDisk) Heal(t testing.TB, c *Cluster) {
	if err := os.Remove(f.filler); err != nil {
		t.Errorf("removing %s: %v", f.filler, err)
	}
	// A server may have exited on the full disk: that is allowed, losing
	// data is not. Start it again.
	if !f.victim.Running() {
		t.Logf("%s exited on the full disk (%v); restarting it", f.victim.Name, f.victim.exitErr())
		f.victim.Kill()
		f.victim.Start(t)
	}
}

// DegradeNetwork delays and drops every raft connection between servers
// through the cluster's proxies (Options.RaftProxy); Heal restores them.
type DegradeNetwork struct {
	Delay, Jitter time.Duration
	Drop          float64 // probability per forwarded chunk of resetting its connection
	before        map[*Proxy][2]int
}

func (f *DegradeNetwork) Name() string        { return "degraded-raft-network" }
func (f *DegradeNetwork) DeposesLeader() bool { return false }
func (f *DegradeNetwork) Inject(t testing.TB, c *Cluster) string {
	if len(c.Proxies) == 0 {
		t.Fatalf("%s needs a cluster with Options.RaftProxy", f.Name())
	}
	f.before = map[*Proxy][2]int{}
	for _, p := range c.Proxies {
		total, dropped := p.Stats()
		f.before[p] = [2]int{total, dropped}
		p.Set(f.Delay, f.Jitter, f.Drop)
	}
	return fmt.Sprintf("raft traffic delayed %s+%s per chunk, connections reset with p=%.3f per chunk", f.Delay, f.Jitter, f.Drop)
}
func (f *DegradeNetwork) Heal(t testing.TB, c *Cluster) {
	var all, conns, resets int
	for _, p := range c.Proxies {
		p.Set(0, 0, 0)
		total, dropped := p.Stats()
		all += total
		conns += total - f.before[p][0]
		resets += dropped - f.before[p][1]
	}
	t.Logf("%s: %d raft connections through the proxies so far, %d opened while degraded, %d reset by the proxies", f.Name(), all, conns, resets)
}

func names(ss []*Server) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += ","
		}
		out += s.Name
	}
	return out
}
