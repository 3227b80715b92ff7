package server

import (
	"github.com/keelson/keelson/internal/serfpool"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/membership"
	"github.com/keelson/keelson/fsm"
)

func TestCheckFeatureLevel(t *testing.T) {
	servers := []membership.RaftServer{{ID: "s1", Voter: true}, {ID: "s2", Voter: true}, {ID: "s3", Voter: true}}
	member := func(name string, level int) serfpool.Member {
		return serfpool.Member{Name: name, Role: serfpool.RoleServer, FeatureLevel: level}
	}
	tests := []struct {
		name    string
		members []serfpool.Member
		want    string // "" allowed
	}{
		{"all upgraded", []serfpool.Member{member("s1", 2), member("s2", 2), member("s3", 3)}, ""},
		{"one old", []serfpool.Member{member("s1", 2), member("s2", 1), member("s3", 2)}, "server s2 is at level 1"},
		{"one advertising nothing", []serfpool.Member{member("s1", 2), member("s2", 2), member("s3", 0)}, "server s3 is at level 1"},
		{"one not in the pool", []serfpool.Member{member("s1", 2), member("s2", 2)}, "server s3 is at level 1"},
		{"an agent's tag does not count", []serfpool.Member{member("s1", 2), member("s2", 2), {Name: "s3", Role: serfpool.RoleAgent, FeatureLevel: 2}}, "server s3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkFeatureLevel(fsm.CmdAlarm, fsm.CommandLevel(fsm.CmdAlarm), servers, tc.members)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLowestLevel(t *testing.T) {
	servers := []membership.RaftServer{{ID: "s1", Voter: true}, {ID: "s2", Voter: true}}
	member := func(name string, level int) serfpool.Member {
		return serfpool.Member{Name: name, Role: serfpool.RoleServer, FeatureLevel: level}
	}
	tests := []struct {
		name    string
		servers []membership.RaftServer
		members []serfpool.Member
		want    int
	}{
		{"all at 2", servers, []serfpool.Member{member("s1", 2), member("s2", 2)}, 2},
		{"one behind", servers, []serfpool.Member{member("s1", 3), member("s2", 2)}, 2},
		{"one advertising nothing counts as 1", servers, []serfpool.Member{member("s1", 2), member("s2", 0)}, 1},
		{"one not in the pool counts as 1", servers, []serfpool.Member{member("s1", 2)}, 1},
		{"a member outside the raft configuration does not count", servers[:1], []serfpool.Member{member("s1", 2), member("s2", 1)}, 2},
		{"no servers", nil, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := lowestLevel(tc.servers, tc.members); got != tc.want {
				t.Fatalf("lowestLevel = %d, want %d", got, tc.want)
			}
		})
	}
}
