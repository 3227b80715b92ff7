package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/snapshots"
	"github.com/spf13/cobra"
)

func newSnapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save the cluster's store to a file, inspect one, or restore one into a new cluster",
	}
	cmd.AddCommand(newSnapshotSaveCommand(), newSnapshotInspectCommand(), newSnapshotRestoreCommand(), newSnapshotListCommand())
	return cmd
}

func newSnapshotSaveCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent snapshot of the store from the server running on --data-dir",
		Long: `Save a snapshot of the store to FILE (mode 0600). The snapshot holds every
write acknowledged before the command started. FILE is written to a temporary
file beside it, verified (checksum and a full decode) and renamed into place,
so FILE is never left half-written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := ops.Dial(dataDir)
			if err != nil {
				return err
			}
			defer c.Close()
			sf, err := ops.SaveSnapshotFile(args[0], func(w io.Writer) error { return c.SaveSnapshot(cmd.Context(), w) })
			if err != nil {
				return err
			}
			defer sf.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "saved %s: %s\n", sf.Path, sf.Describe())
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}

func newSnapshotInspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a snapshot file and describe what it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sf, err := ops.OpenSnapshotFile(args[0])
			if err != nil {
				return err
			}
			defer sf.Close()
			if _, err := sf.Decode(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid; %s\n", sf.Path, sf.Describe())
			return nil
		},
	}
}

func newSnapshotRestoreCommand() *cobra.Command {
	var dataDir string
	var id ops.ServerIdentity
	def := config.DefaultServer()
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Make a fresh --data-dir a new single-server cluster holding the snapshot (offline)",
		Long: `Disaster recovery: make --data-dir, which must hold no raft state, the data
dir of a new single-server cluster whose store is FILE's. No server may be
running on it. Then start ` + "`keelson server`" + ` there with the same --node-name and a
raft address matching --raft-advertise; it elects itself and serves the
snapshot's keys at their revisions. Other servers join it with fresh data dirs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := ops.RestoreSnapshot(args[0], dataDir, id)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			h := res.Snapshot
			fmt.Fprintf(out, "restored %s (index %d, revision %d, %d keys) into %s as a new single-server cluster: server %s, raft address %s\n",
				args[0], h.Index, h.Revision, h.Keys, res.RaftDir, res.Server.NodeName, res.Server.RaftAddr)
			fmt.Fprintf(out, `next:
  1. To keep the old cluster's identity (CA and service-account keys, so existing
     kubeconfigs and tokens stay valid) and the key that encrypts Secrets (without
     it the snapshot's Secrets cannot be read), copy the old server's %s
     directory into %s before the first start; otherwise the server creates new ones.
  2. Start the server: keelson server --data-dir %s --node-name %s
     with --raft-bind/--advertise-address such that its raft address is %s.
  3. Join the other servers with fresh data dirs (--join, and the token in %s).
`, "pki", filepath.Join(dataDir, "pki"), dataDir, res.Server.NodeName, res.Server.RaftAddr, filepath.Join(dataDir, "join-token"))
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	identityFlags(cmd, &id, def.RaftAdvertise(), "raft address other servers will dial to reach this server (host:port, as the server's --raft-bind/--advertise-address give it)")
	return cmd
}

func newSnapshotListCommand() *cobra.Command {
	var dataDir, dir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the scheduled snapshots (--snapshot-schedule) in the snapshot dir, oldest first",
		Long: `List the scheduled snapshots in --snapshot-dir (default DATA_DIR/snapshots),
oldest first, each with what it holds. It reads the files only: no server
needs to run. Restore one with ` + "`keelson snapshot restore FILE`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := config.SnapshotDir(dataDir, dir)
			files, err := snapshots.List(d)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(files) == 0 {
				fmt.Fprintf(out, "no scheduled snapshots in %s\n", d)
				return nil
			}
			for _, f := range files {
				sf, err := ops.OpenSnapshotFile(f.Path)
				if err != nil {
					fmt.Fprintf(out, "%s: unreadable: %v\n", f.Path, err)
					continue
				}
				fmt.Fprintf(out, "%s: %s\n", f.Path, sf.Describe())
				sf.Close()
			}
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&dir, "snapshot-dir", "", "directory of the scheduled snapshots (default DATA_DIR/snapshots)")
	return cmd
}
