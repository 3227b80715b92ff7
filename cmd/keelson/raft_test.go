package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
)

func TestPrintPeersExplainsWhoAnswered(t *testing.T) {
	d := func(x time.Duration) *time.Duration { return &x }
	cases := []struct {
		name string
		resp ops.PeersResponse
		want []string
	}{
		{"leader", ops.PeersResponse{Self: "a", State: "Leader", Term: 3, LeaderID: "a", Peers: []ops.Peer{
			{ID: "a", Address: "10.0.0.1:6444", Voter: true, Leader: true, Self: true, Gossip: "alive", Contact: ops.ContactSelf},
			{ID: "b", Address: "10.0.0.2:6444", Voter: true, Gossip: "alive", Contact: ops.ContactOK},
			{ID: "c", Address: "10.0.0.3:6444", Voter: true, Gossip: "failed", Contact: ops.ContactFailing, SinceContact: d(12 * time.Second)},
		}}, []string{"answered by a (leader, term 3", "(this server)", "b 10.0.0.2:6444 yes no alive ok", "failing, last 12s ago"}},
		{"follower", ops.PeersResponse{Self: "b", State: "Follower", LeaderID: "a", Peers: []ops.Peer{
			{ID: "a", Voter: true, Leader: true, Contact: ops.ContactHeard, SinceContact: d(1500 * time.Millisecond)},
			{ID: "b", Voter: true, Self: true, Contact: ops.ContactSelf},
			{ID: "c", Voter: false, Contact: ops.ContactUnknown},
		}}, []string{"1.5s ago", "run the command on the leader (a)", "c no no - ?"}},
		{"no leader", ops.PeersResponse{Self: "b", State: "Candidate", Peers: []ops.Peer{
			{ID: "a", Voter: true, Contact: ops.ContactNever},
		}}, []string{"no leader is known", "cluster-reset"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			printPeers(&buf, &c.resp)
			// Columns are aligned with spaces; compare words.
			var lines []string
			for _, l := range strings.Split(buf.String(), "\n") {
				lines = append(lines, strings.Join(strings.Fields(l), " "))
			}
			got := strings.Join(lines, "\n")
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

func TestDataDirFlagDefault(t *testing.T) {
	for _, c := range []struct{ env, want string }{{"", config.DefaultDataDir}, {"/srv/keelson", "/srv/keelson"}} {
		t.Setenv(dataDirEnv, c.env)
		cmd := newRaftPeersCommand()
		if got := cmd.Flags().Lookup("data-dir").DefValue; got != c.want {
			t.Errorf("with %s=%q the default --data-dir is %q; want %q", dataDirEnv, c.env, got, c.want)
		}
	}
}
