package kvserver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keelson/keelson/fsm"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestQuotaFillsAndRecovers fills a three-server store past a small quota
// through a follower: the write that would cross it gets etcd's "mvcc:
// database space exceeded", the NOSPACE alarm is raised on every member,
// reads, deletes and compaction still work, nothing acknowledged is lost,
// and after compaction and `etcdctl alarm disarm` writes succeed again.
func TestQuotaFillsAndRecovers(t *testing.T) {
	const quota = 64 << 10
	// n1 has a large quota: what it refuses, it refuses because of the
	// replicated alarm, not its own check.
	nodes := startClusterWith(t, func(c *Config) {
		c.QuotaBytes = quota
		if c.MemberID == MemberID("n1") {
			c.QuotaBytes = 1 << 30
		}
	})
	ctx := ctxT(t)
	follower := nodes[2].client()
	value := strings.Repeat("x", 1000)
	var acked []string
	var refused error
	for i := 0; i < 200 && refused == nil; i++ {
		key := fmt.Sprintf("/q/%03d", i)
		if _, err := follower.Put(ctx, key, value); err != nil {
			refused = err
			break
		}
		acked = append(acked, key)
	}
	if !errors.Is(refused, rpctypes.ErrNoSpace) || !strings.Contains(refused.Error(), "mvcc: database space exceeded") {
		t.Fatalf("after %d puts: err %v, want etcd's %q", len(acked), refused, rpctypes.ErrNoSpace)
	}
	if len(acked) < 40 {
		t.Fatalf("only %d puts of 1000 bytes fit a 64 KiB quota", len(acked))
	}
	// Every member sees the alarm; Status reports it as etcd does.
	for i, n := range nodes {
		c := n.client()
		al, err := c.AlarmList(ctx)
		if err != nil || len(al.Alarms) != 1 || al.Alarms[0].Alarm != pb.AlarmType_NOSPACE || al.Alarms[0].MemberID != MemberID("n3") {
			t.Fatalf("member %d alarms: %v %v", i, err, al)
		}
		st, err := c.Status(ctx, n.addr)
		if err != nil || len(st.Errors) != 1 || st.DbSizeQuota != n.cfg.QuotaBytes || st.DbSize <= 0 {
			t.Fatalf("member %d status: %v %+v", i, err, st)
		}
	}
	// Writes that grow the store are refused on every member, even on n1
	// whose own quota is far away, and so are lease grants.
	leader := nodes[0].client()
	if _, err := leader.Txn(ctx).Then(clientv3.OpPut("/q/small", "")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("txn under NOSPACE: %v", err)
	}
	if _, err := leader.Grant(ctx, 10); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("lease grant under NOSPACE: %v", err)
	}
	// Reads and deletes work; nothing acknowledged was lost.
	for _, n := range nodes {
		got, err := n.client().Get(ctx, "/q/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil || len(got.Kvs) != len(acked) {
			t.Fatalf("read under NOSPACE: %v, %d keys, want %d", err, len(got.Kvs), len(acked))
		}
	}
	del, err := follower.Delete(ctx, "/q/", clientv3.WithPrefix())
	if err != nil || int(del.Deleted) != len(acked) {
		t.Fatalf("delete under NOSPACE: %v %+v", err, del)
	}
	// Deleting alone does not free the history; compaction does. The
	// alarm stays until an operator disarms it.
	if _, err := follower.Compact(ctx, del.Header.Revision); err != nil {
		t.Fatalf("compact under NOSPACE: %v", err)
	}
	if _, err := follower.Put(ctx, "/q/after", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put before disarm: %v", err)
	}
	// etcdctl alarm disarm: list, then deactivate each.
	al, err := follower.AlarmList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range al.Alarms {
		if _, err := follower.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			t.Fatalf("disarm: %v", err)
		}
	}
	if _, err := follower.Put(ctx, "/q/after", "v"); err != nil {
		t.Fatalf("put after compaction and disarm: %v", err)
	}
	if al, err := leader.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("alarms after disarm: %v %v", err, al)
	}
}

// TestFeatureGateHoldsBackNewCommands: while the gate says some server
// cannot apply alarms (a rolling upgrade), disarming is refused with
// FailedPrecondition and a write over the quota is still refused, without
// proposing the alarm.
func TestFeatureGateHoldsBackNewCommands(t *testing.T) {
	gate := func(typ byte) error {
		if typ == fsm.CmdAlarm {
			return errors.New("server s2 is at level 1")
		}
		return nil
	}
	n := startNode(t, t.TempDir(), func(c *Config) { c.QuotaBytes = 4 << 10; c.CommandGate = gate })
	cli := n.client()
	ctx := ctxT(t)
	_, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: pb.AlarmType_NOSPACE})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "server s2 is at level 1") {
		t.Fatalf("gated alarm command: %v, want FailedPrecondition naming the server", err)
	}
	if _, err := cli.Put(ctx, "/big", strings.Repeat("x", 8<<10)); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put over the quota: %v", err)
	}
	if al, err := cli.AlarmList(ctx); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("a gated alarm was raised: %v %v", err, al)
	}
	if _, err := cli.Put(ctx, "/small", "v"); err != nil {
		t.Fatalf("a put within the quota: %v", err)
	}
}
