package pods

import (
	"testing"

	"github.com/keelson/keelson/agent/quota"
	"github.com/keelson/keelson/agent/stats"
)

// TestBoundedFS: a quota-bounded volume reports its bound and its own
// usage, and never more room than its filesystem has left.
func TestBoundedFS(t *testing.T) {
	disk := stats.FS{Capacity: 100 << 30, Available: 50 << 30, Used: 50 << 30, Inodes: 10, InodesFree: 5}
	got := boundedFS(disk, quota.Usage{Used: 20 << 20, Limit: 128 << 20})
	if got.Capacity != 128<<20 || got.Used != 20<<20 || got.Available != 108<<20 || got.Inodes != 10 {
		t.Errorf("bounded volume on a roomy disk: %+v", got)
	}
	full := stats.FS{Capacity: 100 << 30, Available: 1 << 20, Used: 100<<30 - 1<<20}
	if got := boundedFS(full, quota.Usage{Used: 20 << 20, Limit: 128 << 20}); got.Available != 1<<20 {
		t.Errorf("bounded volume on a full disk has %d bytes available; want the disk's 1 MiB", got.Available)
	}
	if got := boundedFS(disk, quota.Usage{Used: 130 << 20, Limit: 128 << 20}); got.Used != 128<<20 || got.Available != 0 {
		t.Errorf("volume over its bound (limit lowered): %+v; want used = capacity, nothing available", got)
	}
}
