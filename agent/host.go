package agent

import (
	"fmt"
	"os"

	"github.com/keelson/keelson/agent/teardown"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/pidfile"
)

// HostRecord is what an agent with cfg installs on its host outside its
// data dir, as `keelson killall` needs to know it.
func HostRecord(cfg config.Agent) teardown.Host {
	h := teardown.Host{
		Bridge:        cfg.Network.Bridge,
		CgroupRoot:    cfg.Kubelet.CgroupRoot,
		CNIBinDir:     cfg.Network.CNIBinDir,
		ContainerdBin: cfg.Runtime.ContainerdBin,
		Containerd:    cfg.Runtime.Containerd,
		Snapshotter:   cfg.Runtime.Snapshotter,
	}
	if !cfg.Network.DisableServiceNetwork {
		h.ClusterDNS = ClusterDNS(cfg)
	}
	return h
}

// recordHost writes the agent's PID and host record, and claims the pod
// bridge, before the agent installs anything: a cleanup after a crash at
// any later point finds what to remove, and an agent starting on a host
// that another agent's leftovers hold fails with what to run.
func (a *Agent) recordHost() error {
	if err := teardown.ClaimBridge(a.cfg.Network.Bridge, a.cfg.DataDir, a.cfg.Network.MTU); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := pidfile.Write(teardown.AgentPIDFile(a.dir), os.Getpid()); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := HostRecord(a.cfg).Save(a.dir); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return nil
}
