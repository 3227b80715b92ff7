package ops

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/snapshots"
	"github.com/keelson/keelson/e2e/harness"
)

// TestScheduledSnapshots: a server with --snapshot-schedule "@every 1s"
// and --snapshot-retention 2 writes snapshots into DATA_DIR/snapshots that
// hold a key written before them, never keeps more than two, and deletes
// the oldest as new ones come; `keelson snapshot list` shows them; the
// newest restores into a fresh server that serves the key at the revision
// it was written at.
func TestScheduledSnapshots(t *testing.T) {
	s := harness.StartServer(t, harness.ServerOptions{DisableAPIServer: true,
		Args: []string{"--snapshot-schedule", "@every 1s", "--snapshot-retention", "2"}})
	ctx := context.Background()
	put, err := s.Etcd(t).Put(ctx, "/registry/configmaps/default/scheduled", "v1")
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision
	dir := config.SnapshotDir(s.DataDir, "")

	var first, newest string
	harness.Eventually(t, waitTimeout, "a scheduled snapshot after the write, and the oldest one pruned", func() (bool, string) {
		files, err := snapshots.List(dir)
		if err != nil {
			return false, err.Error()
		}
		if len(files) > 2 {
			t.Fatalf("%d scheduled snapshots kept with --snapshot-retention 2: %v", len(files), files)
		}
		var names []string
		for _, f := range files {
			names = append(names, f.Name)
		}
		if len(files) > 0 && first == "" {
			first = files[0].Name
		}
		if len(files) == 0 {
			return false, "none yet"
		}
		last := files[len(files)-1]
		sf, err := ops.OpenSnapshotFile(last.Path)
		if err != nil {
			return false, err.Error() // pruned under us: look again
		}
		defer sf.Close()
		newest = last.Path
		return sf.Header.Revision >= rev && !slices.Contains(names, first), fmt.Sprintf("files %v, newest at revision %d", names, sf.Header.Revision)
	})

	out, err := exec.Command(s.Bin, "snapshot", "list", "--data-dir", s.DataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), dir+"/keelson-snapshot-e2e-0-") || !strings.Contains(string(out), "revision") {
		t.Errorf("keelson snapshot list: %v\n%s", err, out)
	}

	fresh := harness.NewServer(t, harness.ServerOptions{DisableAPIServer: true, NodeName: "restored"})
	out, err = exec.Command(s.Bin, "snapshot", "restore", newest, "--data-dir", fresh.DataDir, "--node-name", "restored", "--raft-advertise", fresh.RaftAddr()).CombinedOutput()
	if err != nil {
		t.Fatalf("keelson snapshot restore %s: %v\n%s", newest, err, out)
	}
	fresh.Start(t)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	got, err := fresh.Etcd(t).Get(ctx, "/registry/configmaps/default/scheduled")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v1" || got.Kvs[0].ModRevision != rev {
		t.Errorf("the restored server serves %v, want v1 at revision %d", got.Kvs, rev)
	}
}
