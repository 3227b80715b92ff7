package main

import (
	"fmt"
	"strings"

	"github.com/keelson/keelson/core/ops"
	"github.com/spf13/cobra"
)

func newClusterResetCommand() *cobra.Command {
	var dataDir string
	var id ops.ServerIdentity
	cmd := &cobra.Command{
		Use:   "cluster-reset",
		Short: "Recover a stopped server after the cluster lost quorum for good: make it a cluster of one, keeping its data",
		Long: `Recover after losing quorum: rewrite the raft configuration in the data dir
of a stopped server so that it is the only voter, keeping all its data, so it
starts and elects itself. The server must be stopped. --node-name must be
the name it runs with and be in the current configuration.

Entries in this server's log that never committed are kept as committed: the
recovered state is this server's view. Do not restart the other servers with
their old data dirs afterwards: wipe them and join them again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := ops.ResetCluster(dataDir, id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if res.AlreadyAlone {
				fmt.Fprintf(out, "nothing to do: %s already is the only voter (at %s) in --data-dir %s; just start it\n",
					res.Server.NodeName, res.Server.RaftAddr, dataDir)
				return nil
			}
			var was, others []string
			for _, s := range res.Previous {
				was = append(was, fmt.Sprintf("%s (%s, %s)", s.ID, s.Address, strings.ToLower(s.Suffrage.String())))
				if string(s.ID) != res.Server.NodeName {
					others = append(others, string(s.ID))
				}
			}
			fmt.Fprintf(out, "reset the raft configuration in %s: it was %s; now %s alone, voter at %s. Kept the state at index %d, revision %d.\n",
				dataDir, strings.Join(was, ", "), res.Server.NodeName, res.Server.RaftAddr, res.Index, res.Revision)
			fmt.Fprintf(out, `next:
  1. Start this server: keelson server --data-dir %s --node-name %s (raft address %s). It elects itself.
  2. WARNING: do not restart the other servers (%s) with their old data dirs:
     they still hold the old configuration. Wipe them and join again with --join.
`, dataDir, res.Server.NodeName, res.Server.RaftAddr, strings.Join(others, ", "))
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	identityFlags(cmd, &id, "", "raft address of this server (default: its address in the current configuration)")
	return cmd
}
