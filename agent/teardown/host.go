// Package teardown removes from a host everything a Keelson node agent put
// there, after the agent stopped or was killed (`keelson killall`,
// `keelson uninstall`, `keelson agent --cleanup --all`): the agent process
// and its containerd (by their PID files), every task and container in
// Keelson's containerd namespace, the pods' processes and cgroups under the
// agent's cgroup root, the shims of its containerd, the pods' CNI wiring,
// every mount below the agent's data dir (network namespaces, volumes,
// root filesystems), its pod bridge and the veths on it, the service
// network's iptables chains, routes and cluster DNS addresses.
//
// Everything it removes is identified as the agent's: the containerd
// namespace "keelson", paths under the data dir, the cgroup root and the
// bridge the agent recorded (host.json, written at every start), the
// bridge's alias naming the data dir, and the KEELSON- chain prefixes.
// Nothing else on the host is touched.
//
// Its parts, from pure to effectful: Host (the record), ClaimBridge (an
// agent starting on a host with another agent's leftovers), KillAll and
// Uninstall.
package teardown

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/keelson/keelson/internal/statefile"
)

// Host is what an agent installs on its host outside its data dir, recorded
// when it starts so that a cleanup finds it without the agent's
// configuration (a server's agent derives its cluster DNS address from the
// server's service CIDR, for instance).
type Host struct {
	// Bridge is the pod bridge (--cni-bridge).
	Bridge string `json:"bridge"`
	// CgroupRoot is the parent of the pods' cgroups (--cgroup-root).
	CgroupRoot string `json:"cgroupRoot"`
	// ClusterDNS are the addresses put on DNSLink for the cluster DNS
	// server (--cluster-dns); none without the service network.
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// DNSLink holds the cluster DNS addresses; empty means lo.
	DNSLink string `json:"dnsLink,omitempty"`
	// CNIBinDir holds the CNI plugins that unwire the pods.
	CNIBinDir string `json:"cniBinDir"`
	// ContainerdBin runs the agent's own containerd; Containerd is the
	// socket of an external one (--containerd), empty for its own.
	ContainerdBin string `json:"containerdBin"`
	Containerd    string `json:"containerd,omitempty"`
	Snapshotter   string `json:"snapshotter"`
}

// HostFile is the record of the agent whose agent dir is dir.
func HostFile(agentDir string) string { return filepath.Join(agentDir, "host.json") }

// AgentPIDFile is where the process running the agent (a `keelson agent`,
// or a server with its agent) records its PID.
func AgentPIDFile(agentDir string) string { return filepath.Join(agentDir, "agent.pid") }

// Save records h for the agent whose agent dir is dir.
func (h Host) Save(agentDir string) error {
	if err := statefile.WriteJSON(HostFile(agentDir), h, 0o600); err != nil {
		return fmt.Errorf("recording what the agent installs on the host: %w", err)
	}
	return nil
}

// LoadHost reads the record of the agent whose agent dir is dir; ok is false
// when there is none (the agent never started, or predates the record).
func LoadHost(agentDir string) (h Host, ok bool, err error) {
	if err := statefile.LoadJSON(HostFile(agentDir), &h, time.Now()); err != nil {
		return Host{}, false, err
	}
	return h, h.Bridge != "", nil
}
