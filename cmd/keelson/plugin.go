package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/plugins/builtin"
	"github.com/keelson/keelson/plugins/sdk"
)

// newPluginCommand serves a built-in plugin over go-plugin. The server's
// plugin host runs it when this keelson has no keelson-plugins binary
// embedded (built without make build's keelson_embedplugins tag); run by
// hand it explains that and exits.
func newPluginCommand() *cobra.Command {
	return &cobra.Command{
		Use:    "plugin NAME",
		Short:  "Serve a built-in plugin to the plugin host (started by keelson server, not by hand)",
		Args:   cobra.ExactArgs(1),
		Hidden: true,
		RunE: func(_ *cobra.Command, args []string) error {
			p, ok := builtin.Lookup(args[0])
			if !ok {
				return fmt.Errorf("no built-in plugin %q; built-in plugins are: %s", args[0], strings.Join(builtin.Names(), ", "))
			}
			sdk.Serve(p)
			return nil
		},
	}
}
