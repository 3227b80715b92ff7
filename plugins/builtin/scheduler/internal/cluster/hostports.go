package cluster

import (
	"maps"

	v1 "k8s.io/api/core/v1"
)

// AnyHostIP is the host IP a port binds when none is given.
const AnyHostIP = "0.0.0.0"

type hostPort struct {
	ip       string
	protocol string
	port     int32
}

// HostPorts counts the host ports in use on a node. A count, not a set: two
// pods assumed onto the same port (a race the kubelet resolves) must both
// be removed before the port is free again. The zero value is empty.
type HostPorts map[hostPort]int

func normalize(ip, protocol string, port int32) hostPort {
	if ip == "" {
		ip = AnyHostIP
	}
	if protocol == "" {
		protocol = string(v1.ProtocolTCP)
	}
	return hostPort{ip: ip, protocol: protocol, port: port}
}

// Add records a use of ip/protocol/port.
func (h *HostPorts) Add(ip, protocol string, port int32) {
	if port <= 0 {
		return
	}
	if *h == nil {
		*h = HostPorts{}
	}
	(*h)[normalize(ip, protocol, port)]++
}

// Remove drops one use of ip/protocol/port.
func (h *HostPorts) Remove(ip, protocol string, port int32) {
	if port <= 0 || *h == nil {
		return
	}
	k := normalize(ip, protocol, port)
	if (*h)[k] <= 1 {
		delete(*h, k)
		return
	}
	(*h)[k]--
}

// Conflicts reports whether binding ip/protocol/port would clash with a
// port in use: the wildcard address clashes with every address, and any
// address clashes with the wildcard.
func (h HostPorts) Conflicts(ip, protocol string, port int32) bool {
	if port <= 0 || len(h) == 0 {
		return false
	}
	k := normalize(ip, protocol, port)
	if k.ip == AnyHostIP {
		for used := range h {
			if used.protocol == k.protocol && used.port == k.port {
				return true
			}
		}
		return false
	}
	if h[k] > 0 {
		return true
	}
	k.ip = AnyHostIP
	return h[k] > 0
}

// Len is the number of distinct ports in use.
func (h HostPorts) Len() int { return len(h) }

// Clone returns a copy.
func (h HostPorts) Clone() HostPorts { return maps.Clone(h) }
