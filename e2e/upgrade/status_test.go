package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"google.golang.org/grpc/metadata"

	"github.com/keelson/keelson/core/kvserver"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/e2e/ha"
	"github.com/keelson/keelson/fsm"
)

// gatedRequests proposes each raft command type above level 1 through an
// etcd client (checkGate fails for a type missing here).
var gatedRequests = map[byte]func(context.Context, *clientv3.Client) error{
	// etcdctl alarm disarm: a CmdAlarm DEACTIVATE, harmless with no alarm.
	fsm.CmdAlarm: func(ctx context.Context, c *clientv3.Client) error {
		_, err := c.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: 1, Alarm: pb.AlarmType_NOSPACE})
		return err
	},
	// A write fenced to a term the cluster is not in, as a plugin's write
	// reaches the store: proposed as CmdFenced, every server refuses it
	// (write fenced), which is the command applied. Below the level the
	// kvserver does not refuse the write but sends it unfenced, so it
	// succeeds: that is the gate's answer here.
	fsm.CmdFenced: func(ctx context.Context, c *clientv3.Client) error {
		ctx = metadata.AppendToOutgoingContext(ctx, kvserver.FenceTermMetadata, strconv.FormatUint(1<<40, 10))
		_, err := c.Put(ctx, "/keelson-upgrade-test/fenced", "x")
		switch {
		case err == nil:
			return errWentUnfenced
		case strings.Contains(err.Error(), "write fenced"):
			return nil
		}
		return err
	},
}

// errWentUnfenced is the fenced write's gate refusal: below level 3 the
// write is not refused but goes unfenced.
var errWentUnfenced = errors.New("the write went unfenced: the store's feature gate refused CmdFenced (needs feature level 3)")

// report mirrors `keelson cluster status -o json`.
type report struct {
	Raft            *ops.ClusterStatus `json:"raft"`
	Kubernetes      *ops.KubeStatus    `json:"kubernetes"`
	KubernetesError string             `json:"kubernetesError"`
}

// clusterStatus runs `keelson cluster status -o json` on s's host with the
// binary s runs, as its operator would.
func clusterStatus(s *ha.Server) (*report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", s.NS, s.Bin(), "cluster", "status", "-o", "json", "--data-dir", s.DataDir())
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, fmt.Errorf("cluster status on %s: %w: %s", s.Name, err, ee.Stderr)
		}
		return nil, fmt.Errorf("cluster status on %s: %w", s.Name, err)
	}
	var r report
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("decoding cluster status of %s %q: %w", s.Name, out, err)
	}
	return &r, nil
}

// healthy is a leader, three servers answering within a small lag of the
// leader's log, and the Kubernetes API answering.
func healthy(r *report) bool {
	if r.Raft.LeaderID == "" || len(r.Raft.Servers) != 3 || r.Kubernetes == nil {
		return false
	}
	for _, s := range r.Raft.Servers {
		if s.Status == nil || s.Lag == nil || *s.Lag > 100 {
			return false
		}
	}
	return true
}

func describe(r *report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "leader %q term %d level %d;", r.Raft.LeaderID, r.Raft.Term, r.Raft.FeatureLevel)
	for _, s := range r.Raft.Servers {
		if s.Status == nil {
			fmt.Fprintf(&b, " %s: %s;", s.ID, s.Error)
			continue
		}
		lag := "?"
		if s.Lag != nil {
			lag = fmt.Sprint(*s.Lag)
		}
		fmt.Fprintf(&b, " %s: %s %s lag %s;", s.ID, strings.ToLower(s.Status.State), s.Status.Version, lag)
	}
	if r.Kubernetes == nil {
		fmt.Fprintf(&b, " kubernetes: %s", r.KubernetesError)
	}
	return b.String()
}

// checkStatus checks what cluster status, asked through s (r when already
// read), shows: every server's version and, from an upgraded server,
// every server's store feature level and the cluster's; every node's
// version.
func (u *rollout) checkStatus(s *ha.Server, r *report) {
	t := u.t
	t.Helper()
	if r == nil {
		var err error
		if r, err = clusterStatus(s); err != nil {
			t.Fatal(err)
		}
	}
	newStatus := s.Bin() == u.cur
	lowest := fsm.FeatureLevel
	for _, srv := range u.c.Servers {
		want, level := u.base.Version, u.base.FeatureLevel
		if srv.Bin() == u.cur {
			want, level = u.curVersion, fsm.FeatureLevel
		}
		lowest = min(lowest, max(level, 1))
		rep := serverReport(r, srv.Name)
		switch {
		case rep == nil || rep.Status == nil:
			t.Errorf("cluster status through %s: no report of %s: %s", s.Name, srv.Name, describe(r))
		case rep.Status.Version != want:
			t.Errorf("cluster status through %s: %s runs %s, want %s", s.Name, srv.Name, rep.Status.Version, want)
		}
		if m := member(r, srv.Name); newStatus && (m == nil || m.FeatureLevel != level) {
			t.Errorf("cluster status through %s: gossip member %s %+v, want store feature level %d", s.Name, srv.Name, m, level)
		}
	}
	if newStatus && r.Raft.FeatureLevel != lowest {
		t.Errorf("cluster status through %s: store feature level %d (%s), want %d", s.Name, r.Raft.FeatureLevel, r.Raft.FeatureLevelError, lowest)
	}
	u.checkNodeVersions(s, r)
}

func (u *rollout) checkNodeVersions(s *ha.Server, r *report) {
	t := u.t
	t.Helper()
	if r.Kubernetes == nil {
		t.Errorf("cluster status through %s: no Kubernetes part: %s", s.Name, r.KubernetesError)
		return
	}
	for _, name := range agentNames {
		want := u.base.Version
		if u.agentUpgraded[name] {
			want = u.curVersion
		}
		found := false
		for _, n := range r.Kubernetes.Nodes {
			if n.Name == name {
				found = true
				if !strings.HasSuffix(n.Version, "keelson."+want) {
					t.Errorf("cluster status through %s: node %s at version %s, want keelson %s", s.Name, name, n.Version, want)
				}
			}
		}
		if !found {
			t.Errorf("cluster status through %s: no node %s", s.Name, name)
		}
	}
}

func serverReport(r *report, id string) *ops.ServerReport {
	for i := range r.Raft.Servers {
		if r.Raft.Servers[i].ID == id {
			return &r.Raft.Servers[i]
		}
	}
	return nil
}

func member(r *report, name string) *ops.GossipMember {
	for i := range r.Raft.Members {
		if r.Raft.Members[i].Name == name {
			return &r.Raft.Members[i]
		}
	}
	return nil
}

// versionOf is the keelson version bin reports (`keelson version`).
func versionOf(t interface{ Fatalf(string, ...any) }, bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("%s version: %v", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	v, ok := strings.CutPrefix(first, "keelson ")
	if !ok {
		t.Fatalf("%s version: first line %q, want `keelson VERSION`", bin, first)
	}
	return v
}
