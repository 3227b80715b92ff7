package main

import (
	"log/slog"
	"os"

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
			return server.Run(cmd.Context(), cfg, log, server.Options{BuiltinPlugins: builtin.Names()})
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "YAML configuration file (flags override it)")
	config.ServerFlags(cmd.Flags(), &defaults)
	return cmd
}
