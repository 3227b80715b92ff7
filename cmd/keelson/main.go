// Command keelson is the single binary of a Keelson cluster: control node
// (server), node agent, the real kubectl, built-in plugins and operator
// commands.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	// Imported Kubernetes packages register flags (--version, klog's) on
	// the global flag set at init; cobra would show them on every command.
	// kubectl builds its own flag set, so nothing here needs them.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	root := &cobra.Command{
		Use:           "keelson",
		Short:         "A small-footprint Kubernetes in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCommand(), newAgentCommand(), newImagesCommand(), newVersionCommand(), newKubectlCommand())
	root.AddCommand(newRaftCommand(), newSnapshotCommand(), newClusterResetCommand(), newPluginCommand(), newPluginsCommand(), newTokenCommand())
	root.AddCommand(newCertificateCommand(), newClusterCommand(), newKillallCommand(), newUninstallCommand())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "keelson:", err)
		os.Exit(1)
	}
}

// newLogger builds the process logger from the configured level and format.
func newLogger(level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h)
}
