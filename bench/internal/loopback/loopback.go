// Package loopback finds free TCP ports on 127.0.0.1 for the servers a
// benchmark starts.
package loopback

import (
	"fmt"
	"net"
	"strconv"
)

// FreePorts asks the kernel for n distinct unused loopback ports. They are
// released before the servers bind them; a collision shows up as a start
// failure with the server's log.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free loopback port: %w", err)
		}
		defer l.Close() // held until all n are chosen so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// HostPort is "127.0.0.1:port".
func HostPort(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
