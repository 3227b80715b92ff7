package config

import (
	"fmt"
	"path/filepath"

	"github.com/robfig/cron/v3"
)

// DefaultSnapshotRetention is how many scheduled snapshots a server keeps
// (k3s's --etcd-snapshot-retention default).
const DefaultSnapshotRetention = 5

// Snapshots configures a server's scheduled snapshots of the store (k3s's
// etcd-snapshot-schedule-cron): each server writes its own, of the state
// after a linearizable read, into Dir.
type Snapshots struct {
	// Schedule is a cron expression (five fields, or a descriptor such as
	// @daily or @every 6h); empty takes no scheduled snapshot.
	Schedule string `json:"schedule"`
	// Retention is how many scheduled snapshots are kept; the oldest
	// beyond it are deleted after each new one.
	Retention int `json:"retention"`
	// Dir holds them; empty is DATA_DIR/snapshots.
	Dir string `json:"dir"`
}

// SnapshotDir is where a server with data dir dataDir keeps its scheduled
// snapshots: dir when set, else DATA_DIR/snapshots.
func SnapshotDir(dataDir, dir string) string {
	if dir != "" {
		return dir
	}
	return filepath.Join(dataDir, "snapshots")
}

// ParseSnapshotSchedule parses a schedule as Snapshots.Schedule holds it.
func ParseSnapshotSchedule(s string) (cron.Schedule, error) {
	return cron.ParseStandard(s)
}

func (s *Snapshots) validate() []error {
	var errs []error
	if s.Schedule != "" {
		if _, err := ParseSnapshotSchedule(s.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("snapshots.schedule (--snapshot-schedule): %q: %v; use five cron fields such as \"0 */12 * * *\", or @hourly, @daily, @every 6h", s.Schedule, err))
		}
	}
	if s.Retention < 1 {
		errs = append(errs, fmt.Errorf("snapshots.retention (--snapshot-retention): %d keeps no snapshot; use at least 1 (the default is %d)", s.Retention, DefaultSnapshotRetention))
	}
	return errs
}
