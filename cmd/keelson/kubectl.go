package main

import (
	"errors"
	"io/fs"
	"os"
	"strings"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/server"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/plugin"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
)

// dataDirEnv overrides config.DefaultDataDir for every command that finds a
// server by its data dir (server, kubectl, raft, snapshot, cluster-reset).
const dataDirEnv = "KEELSON_DATA_DIR"

// defaultDataDir is $KEELSON_DATA_DIR, else config.DefaultDataDir.
func defaultDataDir(getenv func(string) string) string {
	if dir := getenv(dataDirEnv); dir != "" {
		return dir
	}
	return config.DefaultDataDir
}

// newKubectlCommand returns `keelson kubectl`: the upstream kubectl, unchanged,
// which on a server talks to the local cluster without any setup (k3s style).
func newKubectlCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "kubectl [flags] [command]",
		Short: "Run kubectl against this cluster (uses the server's admin kubeconfig when KUBECONFIG is unset)",
		// kubectl parses its own flags; cobra would reject every one it does not know.
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE:               runKubectl,
	}
}

// newPluginsCommand returns `keelson plugins`: every plugin's state as the
// leader's plugin host published it (kubectl get plugins.keelson.io -o wide);
// kubectl flags such as --watch or --kubeconfig pass through.
func newPluginsCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "plugins [kubectl get flags]",
		Short:              "Show every plugin's state: running, crash-looping (with its last error), refused, disabled",
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKubectl(cmd, append([]string{"get", "plugins.keelson.io", "-o", "wide"}, args...))
		},
	}
}

// runKubectl runs the upstream kubectl with args, defaulting to the local
// server's admin kubeconfig.
func runKubectl(cmd *cobra.Command, args []string) error {
	if path, ok := defaultKubeconfig(args, os.Getenv, fileExists); ok {
		if err := os.Setenv("KUBECONFIG", path); err != nil {
			return err
		}
	}
	streams := genericiooptions.IOStreams{In: cmd.InOrStdin(), Out: cmd.OutOrStdout(), ErrOut: cmd.ErrOrStderr()}
	kubectl := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		PluginHandler: kubectlcmd.NewDefaultPluginHandler(plugin.ValidPluginFilenamePrefixes),
		// kubectl looks plugins up from its own argv; it must not see "keelson".
		Arguments: append([]string{"kubectl"}, args...),
		ConfigFlags: genericclioptions.NewConfigFlags(true).WithDeprecatedPasswordFlag().
			WithDiscoveryBurst(300).WithDiscoveryQPS(50.0).WithWarningPrinter(streams),
		IOStreams: streams,
	})
	kubectl.SetArgs(args)
	if err := cli.RunNoErrOutput(kubectl); err != nil {
		// As upstream kubectl's main: print the error the kubectl way and
		// exit with kubectl's exit code, which scripts depend on.
		cmdutil.CheckErr(err)
	}
	return nil
}

// defaultKubeconfig returns the server's admin kubeconfig when the user chose no
// kubeconfig (no KUBECONFIG, no --kubeconfig) and that file exists. When it does
// not exist, kubectl keeps its own default (~/.kube/config), which is right on a
// workstation that is not a server.
func defaultKubeconfig(args []string, getenv func(string) string, exists func(string) bool) (string, bool) {
	if getenv("KUBECONFIG") != "" || hasKubeconfigFlag(args) {
		return "", false
	}
	path := server.AdminKubeconfig(defaultDataDir(getenv))
	return path, exists(path)
}

func hasKubeconfigFlag(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false // what follows belongs to the command kubectl runs (exec, run)
		}
		if a == "--kubeconfig" || strings.HasPrefix(a, "--kubeconfig=") {
			return true
		}
	}
	return false
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}
