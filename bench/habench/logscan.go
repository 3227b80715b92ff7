package main

import (
	"bufio"
	"os"
	"strings"
	"time"

	"github.com/keelson/keelson/bench/internal/hacluster"
)

// Raft's log lines (hashicorp/raft through keelson's slog bridge) that mark
// the steps of a failover.
const (
	msgElectionStart = `msg="heartbeat timeout reached, starting election"`
	msgLeader        = `msg="entering leader state"`
)

// firstLogAfter returns the time of the first line of the log at path that
// contains msg and is stamped at or after after (keelson's text logs start
// with time=RFC3339 at millisecond precision, so after is truncated to the
// millisecond too).
func firstLogAfter(path, msg string, after time.Time) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	after = after.Truncate(time.Millisecond)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, msg) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		t, err := time.Parse(time.RFC3339Nano, stamp)
		if err == nil && !t.Before(after) {
			return t, true
		}
	}
	return time.Time{}, false
}

// raftSteps reads from the survivors' logs when, after t0, the first of them
// started an election and when newLeader took over; a missing step is -1.
func raftSteps(survivors []*hacluster.Server, newLeader *hacluster.Server, t0 time.Time) (detectSec, electedSec float64) {
	detectSec, electedSec = -1, -1
	for _, s := range survivors {
		if t, ok := firstLogAfter(s.Proc.LogPath, msgElectionStart, t0); ok {
			if d := t.Sub(t0).Seconds(); detectSec < 0 || d < detectSec {
				detectSec = d
			}
		}
	}
	if newLeader != nil {
		if t, ok := firstLogAfter(newLeader.Proc.LogPath, msgLeader, t0); ok {
			electedSec = t.Sub(t0).Seconds()
		}
	}
	return detectSec, electedSec
}
