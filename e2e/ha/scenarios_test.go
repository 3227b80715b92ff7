package ha

import (
	"testing"
	"time"
)

// Each scenario runs its own three-server cluster (store only), a
// compare-and-swap workload through every server, one fault, and every
// check; see Scenario.Run.

func TestKillLeader(t *testing.T) {
	Scenario{Faults: []Fault{&KillLeader{}}}.Run(t, NewCluster(t, Options{}))
}

func TestPauseLeader(t *testing.T) {
	Scenario{Faults: []Fault{&PauseLeader{}}}.Run(t, NewCluster(t, Options{}))
}

func TestPartitionLeader(t *testing.T) {
	RequireIptables(t)
	Scenario{Faults: []Fault{&IsolateLeader{}}}.Run(t, NewCluster(t, Options{}))
}

func TestPartitionMinority(t *testing.T) {
	RequireIptables(t)
	Scenario{Faults: []Fault{&IsolateFollower{}}}.Run(t, NewCluster(t, Options{}))
}

func TestOneWayPartitionLeader(t *testing.T) {
	RequireIptables(t)
	Scenario{Faults: []Fault{&OneWayLeader{}}}.Run(t, NewCluster(t, Options{}))
}

func TestFullDiskLeader(t *testing.T) {
	Scenario{Faults: []Fault{&FillLeaderDisk{}}}.Run(t, NewCluster(t, Options{DiskSize: "64m"}))
}

func TestDegradedRaftNetwork(t *testing.T) {
	RequireIptables(t)
	Scenario{
		Faults: []Fault{&DegradeNetwork{Delay: 150 * time.Millisecond, Jitter: 100 * time.Millisecond, Drop: 0.01}},
		Hold:   8 * time.Second,
	}.Run(t, NewCluster(t, Options{RaftProxy: true}))
}

// The faults that hit a server's disk, with the raft log in raft.db
// (--raft-log-store=boltdb) instead of the default WAL.
var boltDBLog = []string{"--raft-log-store", "boltdb"}

func TestKillLeaderBoltDBLog(t *testing.T) {
	Scenario{Faults: []Fault{&KillLeader{}}}.Run(t, NewCluster(t, Options{Args: boltDBLog}))
}

func TestFullDiskLeaderBoltDBLog(t *testing.T) {
	Scenario{Faults: []Fault{&FillLeaderDisk{}}}.Run(t, NewCluster(t, Options{DiskSize: "64m", Args: boltDBLog}))
}
