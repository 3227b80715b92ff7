package main

import (
	"fmt"
	"runtime"

	"github.com/keelson/keelson/core/kvserver"
	"github.com/spf13/cobra"
	kubeversion "k8s.io/component-base/version"
)

// keelsonVersion is stamped by the Makefile (-X main.keelsonVersion=...).
var keelsonVersion = "0.1.0-dev"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the keelson, Kubernetes and Go versions",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "keelson %s\nkubernetes %s\netcd API %s\n%s %s/%s\n",
				keelsonVersion, kubeversion.Get().GitVersion, kvserver.EtcdVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
