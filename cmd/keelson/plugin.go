package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/plugininstall"
	"github.com/keelson/keelson/core/pluginstore"
	"github.com/keelson/keelson/core/server"
	"github.com/keelson/keelson/internal/pluginbin"
	"github.com/keelson/keelson/plugins/builtin"
)

// newPluginCommand installs and removes third-party plugins cluster-wide.
// Run with a built-in plugin's name, it serves that plugin over go-plugin:
// the server's plugin host runs it so when this keelson has no
// keelson-plugins binary embedded (built without make build's
// keelson_embedplugins tag).
func newPluginCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Install or remove a third-party plugin on every server (install, remove)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := builtin.Serve(args); err != nil {
				return fmt.Errorf("%w (and the subcommands install and remove)", err)
			}
			return nil
		},
	}
	cmd.AddCommand(newPluginInstallCommand(), newPluginRemoveCommand())
	return cmd
}

// installFlags are `keelson plugin install`'s options.
type installFlags struct {
	dataDir, name, preset, rulesFile, configJSON string
}

func newPluginInstallCommand() *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install FILE",
		Short: "Make a third-party plugin executable run on whichever server leads, now and after any server joins",
		Long: `Install (or update) a third-party plugin for the whole cluster. Run it on a
server: the executable is stored in the server's plugin store
(DATA_DIR/plugin-store/SHA256), and a PluginInstall object names it by its
SHA-256 with the API permissions you approve (--preset or --rules) and its
configuration (--config). Every server fetches the executable from the others
over the servers' mutual TLS, checks its SHA-256 and keeps it; the raft leader
runs it. Installing again under the same name replaces the executable, approval
or configuration: only that plugin restarts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPluginInstall(cmd, args[0], f)
		},
	}
	dataDirFlag(cmd, &f.dataDir)
	cmd.Flags().StringVar(&f.name, "name", "", "the plugin's name (default: the file's base name)")
	cmd.Flags().StringVar(&f.preset, "preset", "", "approve a documented set of API permissions: "+strings.Join(config.PluginPresets(), ", "))
	cmd.Flags().StringVar(&f.rulesFile, "rules", "", "approve the RBAC rules in this YAML or JSON file (a list of PolicyRules)")
	cmd.Flags().StringVar(&f.configJSON, "config", "", "the plugin's configuration section, a JSON object")
	return cmd
}

func runPluginInstall(cmd *cobra.Command, file string, f installFlags) error {
	rec := plugininstall.Record{Name: f.name, Preset: f.preset}
	if rec.Name == "" {
		rec.Name = filepath.Base(file)
	}
	if f.rulesFile != "" {
		b, err := os.ReadFile(f.rulesFile)
		if err != nil {
			return fmt.Errorf("--rules: %w", err)
		}
		var rules []rbacv1.PolicyRule
		if err := yaml.UnmarshalStrict(b, &rules); err != nil {
			return fmt.Errorf("--rules %s: not a list of RBAC PolicyRules: %w", f.rulesFile, err)
		}
		rec.Rules = rules
	}
	if f.configJSON != "" {
		rec.Config = json.RawMessage(f.configJSON)
	}
	store, err := pluginstore.New(config.PluginStoreDir(f.dataDir), pluginstore.Options{})
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w (run it on a server, as the user the server runs as)", f.dataDir, err)
	}
	// The record is validated, with the file's real checksum, before
	// anything is stored; the store hashes what it copies and must agree.
	if rec.SHA256, err = pluginbin.FileSHA256(file); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	if err := rec.Validate(builtin.Names()); err != nil {
		return err
	}
	stored, err := store.PutFile(file)
	if err != nil {
		return fmt.Errorf("storing %s: %w", file, err)
	}
	if stored != rec.SHA256 {
		return fmt.Errorf("%s changed while it was installed (SHA-256 %s, then %s): install it again once it is written", file, rec.SHA256, stored)
	}
	dyn, err := adminDynamic(f.dataDir)
	if err != nil {
		return err
	}
	created, err := plugininstall.Apply(cmd.Context(), dyn, rec)
	if err != nil {
		return err
	}
	verb := "updated"
	if created {
		verb = "installed"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "plugin %s %s (sha256 %s); see its state with: keelson plugins\n", rec.Name, verb, rec.SHA256)
	return nil
}

func newPluginRemoveCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop and uninstall a plugin installed with keelson plugin install, on every server",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dyn, err := adminDynamic(dataDir)
			if err != nil {
				return err
			}
			if err := plugininstall.Remove(cmd.Context(), dyn, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "plugin %s removed: the leader stops it and every server deletes its executable\n", args[0])
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}

// adminDynamic is an API client with the server's admin kubeconfig.
func adminDynamic(dataDir string) (dynamic.Interface, error) {
	kc := server.AdminKubeconfig(dataDir)
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig %s (is --data-dir a server's?): %w", kc, err)
	}
	return dynamic.NewForConfig(rc)
}
