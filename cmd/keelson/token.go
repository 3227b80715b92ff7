package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/keelson/keelson/core/agenttoken"
	"github.com/keelson/keelson/core/pki"
	"github.com/keelson/keelson/core/server"
	"github.com/keelson/keelson/internal/join"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func newTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make and rotate the cluster's join tokens",
		Long: `A cluster has two tokens. The server token (DATA_DIR/join-token) is cluster
root: servers join with it and receive the cluster's CA keys. The agent token
(DATA_DIR/agent-token on the server that created it) only lets a node agent
obtain its own node's credentials. Pass tokens in files (--token-file,
--agent-token-file): a token on the command line shows in ps.`,
	}
	cmd.AddCommand(newTokenGenerateCommand(), newTokenRotateCommand())
	return cmd
}

func newTokenGenerateCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "generate",
		Short: "Print a new random token secret (for --token-file or --agent-token-file of a new cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := join.GenerateSecret()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s)
			return nil
		},
	}
}

func newTokenRotateCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the cluster's agent token: prints the new one and writes it to DATA_DIR/agent-token",
		Long: `Replace the agent token on every server at once (it is kept in the cluster's
store). Nodes that already joined keep their certificates and keep running;
new nodes, and renewals of a node's certificates, need the new token. Run it on
a server: it uses the server's admin kubeconfig and CA in --data-dir.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kc := server.AdminKubeconfig(dataDir)
			rc, err := clientcmd.BuildConfigFromFlags("", kc)
			if err != nil {
				return fmt.Errorf("admin kubeconfig %s (is --data-dir a server's?): %w", kc, err)
			}
			c, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			caHash, err := pki.CAHash(filepath.Join(dataDir, "pki", "ca.crt"))
			if err != nil {
				return err
			}
			tok, err := agenttoken.Rotate(cmd.Context(), c, dataDir, caHash)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok.String())
			fmt.Fprintf(os.Stderr, "the new agent token is in %s; agents joining from now on need it (existing nodes keep running)\n", agenttoken.File(dataDir))
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}
