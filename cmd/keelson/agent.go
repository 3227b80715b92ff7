package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/keelson/keelson/agent"
	"github.com/keelson/keelson/agent/runtime"
	"github.com/keelson/keelson/agent/servicenet"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/apiserver"
	"github.com/spf13/cobra"
	v1 "k8s.io/api/core/v1"
	kubeversion "k8s.io/component-base/version"
)

func newAgentCommand() *cobra.Command {
	var configFile string
	var cleanup, all bool
	defaults := config.DefaultAgent()
	defaults.DataDir = defaultDataDir(os.Getenv)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent: join a cluster with its token and run the pods bound to this node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := config.DefaultAgent()
			base.DataDir = defaultDataDir(os.Getenv)
			if all && !cleanup {
				return fmt.Errorf("--all goes with --cleanup: keelson agent --cleanup --all")
			}
			if cleanup && all {
				cfg, err := config.LoadAgentUnvalidated(base, configFile, cmd.Flags())
				if err != nil {
					return err
				}
				return runTeardown(cmd.Context(), cmd.OutOrStdout(), cfg, false)
			}
			if cleanup {
				return cleanupNetwork(cmd, base, configFile)
			}
			cfg, err := config.LoadAgent(base, configFile, cmd.Flags())
			if err != nil {
				return err
			}
			level, _ := config.ParseLevel(cfg.Log.Level) // validated by LoadAgent
			log := newLogger(level, cfg.Log.Format)
			slog.SetDefault(log)
			log.Info("starting keelson agent", "version", keelsonVersion, "node", cfg.NodeName, "server", cfg.Server, "data_dir", cfg.DataDir)
			return agent.Run(cmd.Context(), cfg, agent.Options{KubeletVersion: kubeversion.Get().GitVersion, Logger: log, NodePlugins: runNodePlugins})
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file (flags override it)")
	cmd.Flags().BoolVar(&cleanup, "cleanup", false, "remove the service network's iptables rules, routes and cluster DNS address from this node, then exit")
	cmd.Flags().BoolVar(&all, "all", false, "with --cleanup: also stop the agent and every container it started, and remove its mounts, pod bridge and cgroups (as keelson killall)")
	config.AgentFlags(cmd.Flags(), &defaults)
	return cmd
}

// cleanupNetwork removes what the agent's service network installed. It
// needs no server nor token, only the addresses the configuration names.
func cleanupNetwork(cmd *cobra.Command, base config.Agent, configFile string) error {
	// Neither --server nor --token is needed to clean up: the file and
	// flags are read without validating the whole agent configuration.
	cfg, err := config.LoadAgentUnvalidated(base, configFile, cmd.Flags())
	if err != nil {
		return err
	}
	var nc servicenet.Config
	for _, s := range agent.ClusterDNS(cfg) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("kubelet.clusterDNS (--cluster-dns): %q is not an IP address", s)
		}
		nc.ClusterDNS = append(nc.ClusterDNS, a)
	}
	if err := servicenet.Cleanup(cmd.Context(), nc); err != nil {
		return fmt.Errorf("cleaning up the service network: %w", err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), "removed the service network's rules, routes and cluster DNS addresses")
	return nil
}

// embeddedAgent is the configuration of the agent a server runs: the
// server's node name and data dir, its own API and supervisor, the join
// token it wrote.
func embeddedAgent(cfg config.Server, token string) config.Agent {
	a := config.DefaultAgent()
	a.DataDir = cfg.DataDir
	a.NodeName = cfg.NodeName
	host := apiserver.LocalHost(cfg.BindAddress)
	a.Server = "https://" + net.JoinHostPort(host, strconv.Itoa(cfg.APIServer.Port))
	a.Token = token
	a.SupervisorPort = cfg.SupervisorPort
	a.ClusterDomain = cfg.APIServer.ClusterDomain
	a.ClusterCIDR = cfg.ClusterCIDR
	a.Log = cfg.Log
	a.PluginDirectory = cfg.PluginDir()
	a.Node = cfg.Agent
	if len(a.Kubelet.ClusterDNS) == 0 && !a.Network.DisableServiceNetwork {
		// The tenth address of the service range, as k3s's default.
		if ip, err := config.ServiceIP(cfg.APIServer.ServiceCIDR, 10); err == nil {
			a.Kubelet.ClusterDNS = []string{ip.String()}
		}
	}
	if a.NodeIP == "" {
		a.NodeIP = cfg.AdvertiseIP()
	}
	return a
}

// controlPlaneTaint keeps ordinary pods off a server's node, where the
// cluster's keys are (kubeadm's taint): only pods tolerating it run there.
var controlPlaneTaint = v1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: v1.TaintEffectNoSchedule}

// runEmbeddedAgent runs the server's agent once the server hands it the join
// token (server.Options.OnJoinToken, on tokens); it returns when ctx ends or
// the agent fails.
func runEmbeddedAgent(ctx context.Context, cfg config.Server, log *slog.Logger, tokens <-chan string) error {
	var token string
	select {
	case <-ctx.Done():
		return nil
	case token = <-tokens:
	}
	acfg := embeddedAgent(cfg, token)
	if err := acfg.Validate(); err != nil {
		return fmt.Errorf("the server's agent configuration (the config file's agent key):\n%w", err)
	}
	opts := agent.Options{Embedded: true, KubeletVersion: kubeversion.Get().GitVersion, Logger: log.With("component", "agent"), NodePlugins: runNodePlugins}
	if !cfg.SchedulableControlPlane {
		opts.RegisterTaints = []v1.Taint{controlPlaneTaint}
	}
	err := agent.Run(ctx, acfg, opts)
	if err != nil {
		return fmt.Errorf("%w (run the server with --disable-agent to run no pods on it)", err)
	}
	return nil
}

func newImagesCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "images", Short: "Manage the images of this node's agent"}
	var dataDir, socket string
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import image tarballs (docker save or OCI layout, optionally compressed) into the agent's containerd",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if socket == "" {
				socket = config.ContainerdSocket(dataDir)
			}
			if _, err := os.Stat(socket); err != nil {
				return fmt.Errorf("containerd socket %s: %w (is the agent running? point --containerd at its socket otherwise)", socket, err)
			}
			dir, err := os.MkdirTemp("", "keelson-images")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			rt, err := runtime.New(cmd.Context(), runtime.Options{Socket: socket, Dir: dir, Snapshotter: config.DefaultNode().Runtime.Snapshotter, Logger: slog.Default()})
			if err != nil {
				return err
			}
			defer rt.Close()
			for _, f := range args {
				file, err := os.Open(f)
				if err != nil {
					return err
				}
				names, err := rt.Import(cmd.Context(), file)
				file.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				for _, n := range names {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", n)
				}
			}
			return nil
		},
	}
	imp.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(os.Getenv), "the agent's data dir (its containerd socket is under it)")
	imp.Flags().StringVar(&socket, "containerd", "", "containerd socket (default: the agent's own, under --data-dir)")
	cmd.AddCommand(imp)
	return cmd
}
