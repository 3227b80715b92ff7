package server

import "testing"

func TestGCPercent(t *testing.T) {
	tests := []struct {
		configured int
		env        string
		want       int
		apply      bool
	}{
		{50, "", 50, true},
		{200, "", 200, true},
		{50, "100", 0, false}, // the environment wins: Go applied it at start
		{50, "off", 0, false},
		{0, "", 0, false}, // unvalidated zero value: Go's default, never SetGCPercent(0)
	}
	for _, tc := range tests {
		got, apply := gcPercent(tc.configured, tc.env)
		if got != tc.want || apply != tc.apply {
			t.Errorf("gcPercent(%d, %q) = %d, %v; want %d, %v", tc.configured, tc.env, got, apply, tc.want, tc.apply)
		}
	}
}
