package runtime

import "testing"

// TestOOMScoreAdjFloor: without CAP_SYS_RESOURCE a container's
// oom_score_adj cannot go below the agent's own (runc would fail to start
// it); with it, anything goes.
func TestOOMScoreAdjFloor(t *testing.T) {
	cases := []struct {
		name, status, own string
		want              int
	}{
		{"all capabilities", "Name:\tkeelson\nCapEff:\t000001ffffffffff\n", "0\n", -1000},
		{"no CAP_SYS_RESOURCE", "Name:\tkeelson\nCapEff:\t000001fffeffffff\n", "0\n", 0},
		{"no CAP_SYS_RESOURCE, own raised", "CapEff:\t0000000000000000\n", "-500\n", -500},
		{"unreadable", "Name:\tkeelson\n", "0\n", -1000},
	}
	for _, tc := range cases {
		if got := floorFrom(tc.status, tc.own); got != tc.want {
			t.Errorf("%s: floor %d, want %d", tc.name, got, tc.want)
		}
	}
}
