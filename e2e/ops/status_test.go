package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/e2e/harness"
)

// converge bounds waits for the cluster to reach a state; a hang guard.
const converge = 2 * time.Minute

// report mirrors `keelson cluster status -o json`.
type report struct {
	Raft            *ops.ClusterStatus `json:"raft"`
	Kubernetes      *ops.KubeStatus    `json:"kubernetes"`
	KubernetesError string             `json:"kubernetesError"`
}

func keelson(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.KeelsonBin(t), args...).CombinedOutput()
	return string(out), err
}

func clusterStatus(t *testing.T, s *harness.Server) (*report, error) {
	t.Helper()
	out, err := keelson(t, "cluster", "status", "-o", "json", "--data-dir", s.DataDir)
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return nil, fmt.Errorf("decoding %q: %v", out, err)
	}
	return &r, nil
}

func serverReport(r *report, id string) *ops.ServerReport {
	for i := range r.Raft.Servers {
		if r.Raft.Servers[i].ID == id {
			return &r.Raft.Servers[i]
		}
	}
	return nil
}

// healthy says what is missing from a healthy three-server report.
func healthy(r *report, plugin string) string {
	if r.Raft.LeaderID == "" || len(r.Raft.Servers) != 3 {
		return fmt.Sprintf("leader %q, %d servers", r.Raft.LeaderID, len(r.Raft.Servers))
	}
	for _, s := range r.Raft.Servers {
		st := s.Status
		if st == nil || s.Lag == nil || !s.Voter || st.StoreBytes == 0 || st.QuotaBytes == 0 || len(st.Certificates) == 0 || st.Version == "" {
			return fmt.Sprintf("server %s: %+v (error %q)", s.ID, st, s.Error)
		}
	}
	if r.Kubernetes == nil {
		return "no Kubernetes part: " + r.KubernetesError
	}
	for _, p := range r.Kubernetes.Plugins {
		if p.Name == plugin && p.State == "running" && p.Ready {
			return ""
		}
	}
	return fmt.Sprintf("plugin %s not running: %+v", plugin, r.Kubernetes.Plugins)
}

func TestClusterStatusAndRaftCommandsFromAFollower(t *testing.T) {
	const plugin = "ttlafterfinished"
	c := harness.StartCluster(t, 3, harness.ServerOptions{Plugins: []string{plugin}})
	// The leader is read again on every try: on a starved machine the
	// servers' first minute may see an election, and a status naming the
	// new leader is as right as one naming the old.
	var leader, asker, victim *harness.Server
	harness.Eventually(t, converge, "a healthy cluster status from a follower", func() (bool, string) {
		leader, _ = c.Leader(t)
		var followers []*harness.Server
		for _, s := range c.Servers {
			if s != leader {
				followers = append(followers, s)
			}
		}
		asker, victim = followers[0], followers[1]
		r, err := clusterStatus(t, asker)
		if err != nil {
			return false, err.Error()
		}
		if why := healthy(r, plugin); why != "" {
			return false, why
		}
		return r.Raft.LeaderID == leader.Name() && r.Raft.View == leader.Name(),
			fmt.Sprintf("%s says leader %q (view %q), the servers say %s", asker.Name(), r.Raft.LeaderID, r.Raft.View, leader.Name())
	})
	table, err := keelson(t, "cluster", "status", "--data-dir", asker.DataDir)
	if err != nil || !strings.Contains(table, "SERVERS (leader "+leader.Name()) || !strings.Contains(table, plugin) {
		t.Errorf("table output: %v\n%s", err, table)
	}

	// One server down: it is shown down with the reason, the others still
	// report, and the leader sees its heartbeats fail.
	victim.Kill()
	harness.Eventually(t, converge, victim.Name()+" shown down", func() (bool, string) {
		r, err := clusterStatus(t, asker)
		if err != nil {
			return false, err.Error()
		}
		v := serverReport(r, victim.Name())
		// Gossip marks it failed once its suspicion timeout passes; until
		// then remove-peer rightly refuses a server still alive there.
		if v == nil || v.Status != nil || !strings.Contains(v.Error, "no answer from") || v.Contact != ops.ContactFailing || v.Gossip != "failed" {
			return false, fmt.Sprintf("%+v", v)
		}
		for _, s := range []*harness.Server{leader, asker} {
			if sr := serverReport(r, s.Name()); sr == nil || sr.Status == nil || sr.Status.LeaderID != leader.Name() {
				return false, fmt.Sprintf("%s: %+v", s.Name(), sr)
			}
		}
		return true, ""
	})
	table, err = keelson(t, "cluster", "status", "--data-dir", asker.DataDir)
	if err != nil || !strings.Contains(table, victim.Name()+": no answer from") {
		t.Errorf("degraded table output: %v\n%s", err, table)
	}

	// The raft commands work from a follower: leadership moves to it, and
	// the old leader (now a follower) removes the dead server.
	out, err := keelson(t, "raft", "transfer-leader", asker.Name(), "--data-dir", asker.DataDir)
	if err != nil || !strings.Contains(out, "leadership moved from "+leader.Name()+" to "+asker.Name()) {
		t.Fatalf("transfer-leader run on the follower %s: %v: %s", asker.Name(), err, out)
	}
	if now, _ := c.Leader(t); now != asker {
		t.Fatalf("after transfer-leader the leader is %s; want %s", now.Name(), asker.Name())
	}
	out, err = keelson(t, "raft", "remove-peer", victim.Name(), "--data-dir", leader.DataDir)
	if err != nil || !strings.Contains(out, "removed "+victim.Name()) {
		t.Fatalf("remove-peer run on the follower %s: %v: %s", leader.Name(), err, out)
	}
	r, err := clusterStatus(t, leader)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Raft.Servers) != 2 || serverReport(r, victim.Name()) != nil {
		t.Errorf("after remove-peer: %+v; want two servers", r.Raft.Servers)
	}
}
