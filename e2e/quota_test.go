package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/e2e/harness"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestStoreQuota fills a server with a 16 MiB --store-quota-bytes through
// kubectl until the API refuses with etcd's space-exceeded error, then
// checks what an operator relies on: reads and deletes work, the NOSPACE
// alarm is listed (etcdctl alarm list), nothing acknowledged is lost, and
// after compaction and `etcdctl alarm disarm` writes succeed again, all
// without the server restarting.
func TestStoreQuota(t *testing.T) {
	const quota = 16 << 20
	s := harness.StartServer(t, harness.ServerOptions{
		Args:              []string{"--store-quota-bytes", fmt.Sprint(quota)},
		KubeAPIServerArgs: map[string]string{"etcd-compaction-interval": "1h"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli := s.Etcd(t)

	data := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(data, []byte(strings.Repeat("q", 900<<10)), 0o600); err != nil {
		t.Fatal(err)
	}
	var created []string
	var refused harness.KubectlResult
	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("fill-%02d", i)
		r := s.Kubectl(t, "create", "configmap", name, "--from-file=data="+data)
		if r.ExitCode != 0 {
			refused = r
			break
		}
		created = append(created, name)
	}
	t.Logf("%d ConfigMaps of 900 KiB created before the refusal: %s", len(created), strings.TrimSpace(refused.Stderr))
	if refused.ExitCode == 0 || !strings.Contains(refused.Stderr, "mvcc: database space exceeded") {
		t.Fatalf("after %d ConfigMaps, want kubectl to fail with etcd's space-exceeded error; got %s", len(created), refused)
	}
	if len(created) < 5 {
		t.Fatalf("only %d ConfigMaps fit a 16 MiB quota", len(created))
	}
	al, err := cli.AlarmList(ctx)
	if err != nil || len(al.Alarms) != 1 || al.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarm list: %v %v", err, al)
	}

	// Reads work and every acknowledged ConfigMap is there.
	got := s.MustKubectl(t, "get", "configmaps", "-o", "name")
	for _, name := range created {
		if !strings.Contains(got, "configmap/"+name+"\n") {
			t.Fatalf("acknowledged ConfigMap %s missing under NOSPACE:\n%s", name, got)
		}
	}
	// Deletes work.
	for _, name := range created {
		s.MustKubectl(t, "delete", "configmap", name)
	}
	// Free the history (kube-apiserver's compactor would, within its
	// interval) and disarm, as `etcdctl compact` and `etcdctl alarm
	// disarm` do.
	compactLikeKubeAPIServerUnderAlarm(ctx, t, cli)
	st, err := cli.Status(ctx, s.EtcdAddr())
	if err != nil || st.DbSize >= quota/2 {
		t.Fatalf("after deleting and compacting, status %v %+v", err, st)
	}
	for _, a := range al.Alarms {
		if _, err := cli.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			t.Fatalf("alarm disarm: %v", err)
		}
	}
	if al, err := cli.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarms after disarm: %v %v", err, al)
	}
	s.MustKubectl(t, "create", "configmap", "after-disarm", "--from-literal=k=v")
	if !s.Running() {
		t.Fatal("server exited")
	}
}

// compactLikeKubeAPIServerUnderAlarm compacts at the current revision. The
// compact_rev_key put kube-apiserver's compactor makes is refused under
// NOSPACE (it grows the store, as in etcd), so this compacts directly.
func compactLikeKubeAPIServerUnderAlarm(ctx context.Context, t *testing.T, cli *clientv3.Client) {
	t.Helper()
	cur, err := cli.Get(ctx, "compact_rev_key")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatalf("compact at %d under NOSPACE: %v", cur.Header.Revision, err)
	}
}
