package teardown

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keelson/keelson/agent/cni"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/servicenet"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/internal/pidfile"
)

// Options say which agent to clean up after.
type Options struct {
	// DataDir is the agent's (or its server's) data dir.
	DataDir string
	// Host is what to assume the agent installed when it left no record
	// (its configuration's values).
	Host Host
	// AgentGrace is how long a running agent gets to stop on SIGTERM
	// before SIGKILL.
	AgentGrace time.Duration
	Logger     *slog.Logger
}

// Report says what KillAll removed, for the operator.
type Report struct {
	// Stopped are the processes stopped by their PID files.
	Stopped []string
	// Containers removed through containerd; Killed are processes killed
	// without it (pods' processes, shims).
	Containers []string
	Killed     []int
	// Unwired pods (by UID), Unmounted mount points, Links deleted.
	Unwired   []string
	Unmounted []string
	Links     []string
}

// cleanup is one run of KillAll: its inputs and what it did.
type cleanup struct {
	dataDir, agentDir string
	host              Host
	// recorded: host is the agent's own record, not the configuration's
	// guess.
	recorded bool
	log      *slog.Logger
	report   Report
}

// KillAll stops the agent that ran on opts.DataDir, with every container it
// started, and removes everything of it from the host except its data
// dir's files: a later agent on the same data dir starts clean, and so does
// one on another data dir. It is safe to run twice, and on a host where the
// agent never ran. Errors do not stop it: it does every step it can and
// returns them all.
func KillAll(ctx context.Context, opts Options) (Report, error) {
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return Report{}, fmt.Errorf("--data-dir %s: %w", opts.DataDir, err)
	}
	if resolved, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = resolved
	}
	c := &cleanup{dataDir: dataDir, agentDir: config.AgentDir(dataDir), host: opts.Host, log: opts.Logger}
	if c.log == nil {
		c.log = slog.Default()
	}
	if h, ok, err := LoadHost(c.agentDir); err != nil {
		c.log.Warn("the agent's host record is unreadable: using the configuration's values", "err", err)
	} else if ok {
		c.host, c.recorded = h, true
	}
	if opts.AgentGrace == 0 {
		opts.AgentGrace = 30 * time.Second
	}
	errs := []error{
		c.stop("agent", AgentPIDFile(c.agentDir), opts.AgentGrace),
		c.stop("containerd", runtime.DaemonPIDFile(c.containerdDir()), 10*time.Second),
		c.removeContainers(ctx),
	}
	c.killPods()
	c.killShims()
	errs = append(errs, c.unwirePods(ctx), c.unmount(), c.removeNetwork(ctx), c.removeCgroups())
	return c.report, errors.Join(errs...)
}

func (c *cleanup) containerdDir() string { return filepath.Join(c.agentDir, "containerd") }

// stop ends the process a PID file names, if it still runs.
func (c *cleanup) stop(what, file string, grace time.Duration) error {
	p, ok, err := pidfile.Read(file)
	if err != nil || !ok || !p.Alive() {
		return err
	}
	c.log.Info("stopping "+what, "pid", p.PID)
	if err := p.Stop(grace); err != nil {
		return fmt.Errorf("stopping %s: %w", what, err)
	}
	c.report.Stopped = append(c.report.Stopped, fmt.Sprintf("%s (pid %d)", what, p.PID))
	return nil
}

// removeContainers kills and deletes every task and container in Keelson's
// namespace, through the agent's own containerd started again on its
// root and state (it finds the shims the killed one left), or through the
// external containerd the agent used.
func (c *cleanup) removeContainers(ctx context.Context) error {
	socket := c.host.Containerd
	if socket == "" {
		if _, err := os.Stat(filepath.Join(c.containerdDir(), "state")); err != nil {
			return nil // never ran its containerd
		}
		bin := c.host.ContainerdBin
		if bin == "" {
			bin = config.DefaultNode().Runtime.ContainerdBin
		}
		d, err := runtime.StartDaemon(ctx, runtime.DaemonOptions{Bin: bin, Dir: c.containerdDir(), Logger: c.log})
		if err != nil {
			return fmt.Errorf("starting the agent's containerd to remove its containers (its shims and pods are killed instead): %w", err)
		}
		defer d.Stop()
		defer os.Remove(runtime.DaemonPIDFile(c.containerdDir()))
		socket = d.Socket()
	}
	snap := c.host.Snapshotter
	if snap == "" {
		snap = config.DefaultNode().Runtime.Snapshotter
	}
	rt, err := runtime.New(ctx, runtime.Options{Socket: socket, Dir: filepath.Join(c.agentDir, "runtime"), Snapshotter: snap, Logger: c.log})
	if err != nil {
		return err
	}
	defer rt.Close()
	ids, err := rt.RemoveAll(ctx)
	c.report.Containers = append(c.report.Containers, ids...)
	return err
}

// unwirePods runs the CNI plugins' DEL for every pod that still has a
// network namespace, with the configuration it was wired with (so that
// port mappings and address leases go too), and removes the namespace.
func (c *cleanup) unwirePods(ctx context.Context) error {
	netDir := filepath.Join(c.agentDir, "cni")
	if _, err := os.Stat(netDir); err != nil {
		return nil
	}
	n, err := cni.New(cni.Options{BinDir: c.host.CNIBinDir, Dir: netDir, Bridge: c.host.Bridge})
	if err != nil {
		return fmt.Errorf("unwiring pods (their namespaces are unmounted instead): %w", err)
	}
	uids, err := n.NetNSes()
	if err != nil {
		return err
	}
	var errs []error
	for _, uid := range uids {
		if err := n.Teardown(ctx, cni.Pod{UID: uid}); err != nil {
			errs = append(errs, err)
			continue
		}
		c.report.Unwired = append(c.report.Unwired, uid)
	}
	return errors.Join(errs...)
}

// removeNetwork removes the service network's rules, routes and DNS
// addresses, then the pod bridge with the veths left on it.
func (c *cleanup) removeNetwork(ctx context.Context) error {
	nc := servicenet.Config{DNSLink: c.host.DNSLink}
	var errs []error
	for _, s := range c.host.ClusterDNS {
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster DNS address %q: %w", s, err))
			continue
		}
		nc.ClusterDNS = append(nc.ClusterDNS, a)
	}
	errs = append(errs, servicenet.Cleanup(ctx, nc))
	if c.host.Bridge != "" {
		links, err := deleteBridge(c.host.Bridge, c.dataDir, c.recorded)
		c.report.Links = append(c.report.Links, links...)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Uninstall is KillAll, then removes the data dir, the cluster's state on
// this host included (a server's raft data, certificates and tokens). It
// refuses to remove a data dir with anything still mounted below it: the
// removal would reach into the mounted file systems (hostPath volumes).
func Uninstall(ctx context.Context, opts Options) (Report, error) {
	r, err := KillAll(ctx, opts)
	if err != nil {
		return r, fmt.Errorf("%w\nthe data dir %s was kept: fix the above and run again", err, opts.DataDir)
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return r, err
	}
	if resolved, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = resolved
	}
	left, err := mountsBelow(dataDir)
	if err != nil {
		return r, err
	}
	if len(left) > 0 {
		return r, fmt.Errorf("still mounted below the data dir %s, which was kept: %s; unmount them and run again", dataDir, strings.Join(left, ", "))
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return r, fmt.Errorf("removing the data dir: %w", err)
	}
	return r, nil
}
