package loopback

import (
	"net"
	"testing"
)

func TestFreePortsAreDistinctAndBindable(t *testing.T) {
	ports, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Errorf("FreePorts(3) = %v: want distinct positive ports", ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", HostPort(p))
		if err != nil {
			t.Errorf("port %d from FreePorts is not free: %v", p, err)
			continue
		}
		l.Close()
	}
}
