package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/agent"
	"github.com/keelson/keelson/agent/teardown"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/plugins/host"
)

// newKillallCommand is k3s-killall.sh's counterpart.
func newKillallCommand() *cobra.Command {
	return teardownCommand("killall",
		"Stop the agent (or server) on this host and every container it started, and remove its mounts, network devices, rules, routes and DNS address; keep the data dir",
		false)
}

// newUninstallCommand is k3s-uninstall.sh's counterpart.
func newUninstallCommand() *cobra.Command {
	return teardownCommand("uninstall",
		"Do what killall does, then remove the data dir: this host's part of the cluster is gone",
		true)
}

func teardownCommand(use, short string, uninstall bool) *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long: short + `.

What it removes is found through the data dir: the PID files of the agent
(or the server running one) and of its containerd, Keelson's containerd
namespace, mounts below DATA_DIR/agent, and the pod bridge, cgroup root and
cluster DNS addresses the agent recorded in DATA_DIR/agent/host.json when
it started (without that record, the values of --config and the defaults).
Nothing else on the host is touched. It is safe to run twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := config.DefaultAgent()
			base.DataDir = defaultDataDir(os.Getenv)
			cfg, err := config.LoadAgentUnvalidated(base, configFile, cmd.Flags())
			if err != nil {
				return err
			}
			return runTeardown(cmd.Context(), cmd.OutOrStdout(), cfg, uninstall)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the agent's YAML configuration file, for what its host record does not say")
	cmd.Flags().String("data-dir", defaultDataDir(os.Getenv), "data dir of the agent or server (env "+dataDirEnv+")")
	return cmd
}

// runTeardown runs teardown.KillAll, or Uninstall, for the agent cfg
// describes, and prints what it removed.
func runTeardown(ctx context.Context, out io.Writer, cfg config.Agent, uninstall bool) error {
	if uninstall {
		if err := refuseRunningServer(ctx, cfg.DataDir); err != nil {
			return err
		}
	}
	opts := teardown.Options{DataDir: cfg.DataDir, Host: agent.HostRecord(cfg), Logger: slog.Default()}
	run := teardown.KillAll
	if uninstall {
		run = teardown.Uninstall
	}
	r, err := run(context.WithoutCancel(ctx), opts)
	printReport(out, r)
	// The plugins' socket and executable directories (host.PrepareSocketDir,
	// PrepareExecDir) of the server and of its agent, or of the agent, once
	// their hosts are gone.
	for _, d := range []string{cfg.DataDir, config.AgentDir(cfg.DataDir)} {
		_ = host.RemoveRunDirs(d)
	}
	if err != nil {
		return err
	}
	if uninstall {
		fmt.Fprintf(out, "removed the data dir %s\n", cfg.DataDir)
		if cfg.StorageDir != "" {
			fmt.Fprintf(out, "kept the local volumes' storage dir %s (outside the data dir): remove it yourself if its data is not needed\n", cfg.StorageDir)
		}
	}
	return nil
}

// refuseRunningServer stops uninstall from removing the data dir of a
// server that runs without an agent (killall cannot find it by a PID
// file): its raft data would vanish under it.
func refuseRunningServer(ctx context.Context, dataDir string) error {
	c, err := ops.Dial(dataDir)
	if err != nil {
		return nil // no admin socket: no server
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Peers(ctx); err != nil {
		return nil
	}
	return fmt.Errorf("a keelson server is running on --data-dir %s: stop it first (systemctl stop keelson, or end the process), then run uninstall again", dataDir)
}

func printReport(out io.Writer, r teardown.Report) {
	for _, s := range r.Stopped {
		fmt.Fprintf(out, "stopped %s\n", s)
	}
	lines := []struct {
		what string
		n    int
	}{
		{"containers removed", len(r.Containers)}, {"processes killed", len(r.Killed)},
		{"pods unwired", len(r.Unwired)}, {"mounts removed", len(r.Unmounted)}, {"network devices deleted", len(r.Links)},
	}
	for _, l := range lines {
		fmt.Fprintf(out, "%s: %d\n", l.what, l.n)
	}
	fmt.Fprintln(out, "removed the service network's rules, routes and cluster DNS addresses")
}
