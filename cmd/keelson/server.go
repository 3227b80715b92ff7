package main

import (
	"context"
	"log/slog"
	"os"

	"github.com/keelson/keelson/agent/network"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/server"
	"github.com/keelson/keelson/plugins/builtin"
	"github.com/spf13/cobra"
)

func newServerCommand() *cobra.Command {
	var configFile string
	defaults := config.DefaultServer()
	defaults.DataDir = defaultDataDir(os.Getenv)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a control node: replicated store, etcd API and Kubernetes API",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := config.DefaultServer()
			base.DataDir = defaultDataDir(os.Getenv)
			cfg, err := config.LoadServerFrom(base, configFile, cmd.Flags())
			if err != nil {
				return err
			}
			level, _ := config.ParseLevel(cfg.Log.Level) // validated by LoadServer
			log := newLogger(level, cfg.Log.Format)
			slog.SetDefault(log)
			log.Info("starting keelson server", "version", keelsonVersion, "node", cfg.NodeName, "data_dir", cfg.DataDir)
			if cfg.DisableAgent {
				return server.Run(cmd.Context(), cfg, log, serverOptions())
			}
			return runServerWithAgent(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file (flags override it)")
	config.ServerFlags(cmd.Flags(), &defaults)
	return cmd
}

// serverOptions are what the server binary adds to its configuration: the
// built-in plugins compiled into it and what its node agents read.
func serverOptions() server.Options {
	return server.Options{BuiltinPlugins: builtin.Names(), NodeRules: network.RBACRules(), Version: keelsonVersion}
}

// runServerWithAgent runs the server and its node agent; either failing
// stops both, the agent first.
func runServerWithAgent(ctx context.Context, cfg config.Server, log *slog.Logger) error {
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	serverCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	agentDone := make(chan error, 1)
	go func() { agentDone <- runEmbeddedAgent(agentCtx, cfg, log) }()
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Run(serverCtx, cfg, log, serverOptions()) }()
	select {
	case err := <-agentDone:
		stopServer()
		if serr := <-serverDone; err == nil {
			err = serr
		}
		return err
	case err := <-serverDone:
		stopAgent()
		<-agentDone
		return err
	}
}
