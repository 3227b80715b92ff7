package hacluster

import (
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestLeaderOf(t *testing.T) {
	names := []string{"s1", "s2", "s3"}
	tests := []struct {
		name    string
		views   []view
		want    uint64
		wantErr string
	}{
		{"all agree", []view{{leader: 7}, {leader: 7}, {leader: 7}}, 7, ""},
		{"one unreachable", []view{{leader: 7}, {err: errors.New("refused")}, {leader: 7}}, 0, "s2: refused"},
		{"one without leader", []view{{leader: 7}, {leader: 7}, {term: 4}}, 0, "s3 knows no leader"},
		{"disagreement", []view{{leader: 7}, {leader: 8}, {leader: 7}}, 0, "disagree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := leaderOf(names, tt.views)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("leaderOf = %v, %v; want %v, error containing %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestFreePortsOn(t *testing.T) {
	addrs := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ports, err := freePortsOn(addrs, 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d chosen twice: %v", p, ports)
		}
		seen[p] = true
		for _, a := range addrs {
			l, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(p)))
			if err != nil {
				t.Errorf("port %d not free on %s after freePortsOn: %v", p, a, err)
				continue
			}
			l.Close()
		}
	}
}
