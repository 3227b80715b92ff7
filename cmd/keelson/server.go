package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/keelson/keelson/agent/servicenet"
	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/server"
	"github.com/keelson/keelson/plugins/builtin"
	"github.com/keelson/keelson/plugins/builtin/multicall"
	"github.com/spf13/cobra"
)

func newServerCommand() *cobra.Command {
	var configFile string
	var leafLifetime, caLifetime time.Duration
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
			if leafLifetime != 0 && leafLifetime < minLeafLifetime {
				return fmt.Errorf("--leaf-cert-lifetime %s: use at least %s", leafLifetime, minLeafLifetime)
			}
			if caLifetime != 0 && caLifetime < minLeafLifetime {
				return fmt.Errorf("--ca-cert-lifetime %s: use at least %s", caLifetime, minLeafLifetime)
			}
			opts := serverOptions()
			opts.LeafCertLifetime, opts.CACertLifetime = leafLifetime, caLifetime
			if cfg.DisableAgent {
				return server.Run(cmd.Context(), cfg, log, opts)
			}
			return runServerWithAgent(cmd.Context(), cfg, log, opts)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file (flags override it)")
	config.ServerFlags(cmd.Flags(), &defaults)
	// A test knob, not a setting: tests issue seconds-long certificates to
	// watch a running server renew them.
	cmd.Flags().DurationVar(&leafLifetime, "leaf-cert-lifetime", 0, "lifetime of the server's own certificates (testing only; default 365 days)")
	cmd.Flags().DurationVar(&caLifetime, "ca-cert-lifetime", 0, "lifetime of the CAs a new cluster creates (testing only; default 10 years)")
	cmd.Flags().MarkHidden("leaf-cert-lifetime")
	cmd.Flags().MarkHidden("ca-cert-lifetime")
	return cmd
}

// minLeafLifetime keeps a test's short certificates renewable: the server
// checks every second and renews at two thirds of the lifetime.
const minLeafLifetime = 10 * time.Second

// serverOptions are what the server binary adds to its configuration: the
// built-in plugins compiled into it and what its node agents read.
func serverOptions() server.Options {
	return server.Options{BuiltinPlugins: builtin.Names(), BuiltinNodePlugins: builtin.NodeNames(), ServedByKeelson: multicall.ServedByKeelson, NodeRules: append(servicenet.RBACRules(), builtin.NodeRules()...), Version: keelsonVersion}
}

// runServerWithAgent runs the server and its node agent; either failing
// stops both, the agent first.
func runServerWithAgent(ctx context.Context, cfg config.Server, log *slog.Logger, opts server.Options) error {
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	serverCtx, stopServer := context.WithCancel(ctx)
	defer stopServer()
	agentDone := make(chan error, 1)
	token := make(chan string, 1)
	opts.OnJoinToken = func(t string) {
		select {
		case token <- t:
		default:
		}
	}
	go func() { agentDone <- runEmbeddedAgent(agentCtx, cfg, log, token) }()
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Run(serverCtx, cfg, log, opts) }()
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
