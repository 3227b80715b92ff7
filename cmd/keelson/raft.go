package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
	"github.com/spf13/cobra"
)

// adminTimeout bounds the short admin calls (peers, remove-peer).
const adminTimeout = 30 * time.Second

// dataDirFlag registers --data-dir with the default `keelson kubectl` uses:
// $KEELSON_DATA_DIR, else /var/lib/keelson.
func dataDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "data-dir", defaultDataDir(os.Getenv), "data dir of the server (env "+dataDirEnv+")")
}

// identityFlags registers --node-name and --raft-advertise for the offline
// commands that write a raft configuration.
func identityFlags(cmd *cobra.Command, id *ops.ServerIdentity, defaultAddr string, addrHelp string) {
	def := config.DefaultServer()
	cmd.Flags().StringVar(&id.NodeName, "node-name", def.NodeName, "the --node-name the server runs with")
	cmd.Flags().StringVar(&id.RaftAddr, "raft-advertise", defaultAddr, addrHelp)
}

func newRaftCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "raft",
		Short: "Inspect and change the raft configuration of a running cluster",
	}
	cmd.AddCommand(newRaftPeersCommand(), newRaftRemovePeerCommand(), newRaftTransferLeaderCommand())
	return cmd
}

func newRaftPeersCommand() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the raft servers: address, voter, leader, gossip status, last contact",
		Long: `List the raft configuration as the server running on --data-dir sees it.

LAST CONTACT depends on who answers. The leader shows "ok" for a follower its
latest heartbeat reached and "failing, last Xs ago" for one it cannot reach
(time since the last successful heartbeat). A follower shows only how long ago
it last heard from the leader; run the command on the leader to see the others.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			c, ctx, done, err := dialAdmin(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.Peers(ctx)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(resp)
			}
			printPeers(cmd.OutOrStdout(), resp)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func printPeers(w io.Writer, r *ops.PeersResponse) {
	fmt.Fprintf(w, "answered by %s (%s, term %d, commit index %d, applied index %d)\n",
		r.Self, strings.ToLower(r.State), r.Term, r.CommitIndex, r.AppliedIndex)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tVOTER\tLEADER\tGOSSIP\tLAST CONTACT")
	for _, p := range r.Peers {
		gossip := p.Gossip
		if gossip == "" {
			gossip = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.Address, yesNo(p.Voter), yesNo(p.Leader), gossip, contact(p))
	}
	tw.Flush()
	switch {
	case r.LeaderID == "":
		fmt.Fprintln(w, "no leader is known: the cluster may have lost quorum (see `keelson cluster-reset --help`)")
	case r.LeaderID != r.Self:
		fmt.Fprintf(w, "this server is a follower; run the command on the leader (%s) for its view of every server\n", r.LeaderID)
	}
}

func contact(p ops.Peer) string {
	ago := func() string {
		if p.SinceContact == nil {
			return "?"
		}
		return p.SinceContact.Round(100*time.Millisecond).String() + " ago"
	}
	switch p.Contact {
	case ops.ContactSelf:
		return "(this server)"
	case ops.ContactOK:
		return "ok"
	case ops.ContactFailing:
		return "failing, last " + ago()
	case ops.ContactHeard:
		return ago()
	case ops.ContactNever:
		return "never"
	default:
		return "?"
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func newRaftRemovePeerCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "remove-peer ID",
		Short: "Remove a stopped server from the raft configuration (run on any server)",
		Long: `Remove server ID from the raft configuration. Run it on any server: a
follower forwards the request to the leader.

It refuses to remove the leader (move leadership first with
` + "`keelson raft transfer-leader`" + `, or stop that server: it hands leadership over
as it stops), a server still alive in the gossip pool (the leader would add
it back; stop it first), and a removal after which the voters the leader
reaches would not be a quorum of the remaining voters.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := dialAdmin(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer done()
			resp, err := c.RemovePeer(ctx, args[0])
			if err != nil {
				return err
			}
			var left []string
			for _, p := range resp.Peers {
				left = append(left, p.ID)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s from the raft configuration; servers now: %s\n", resp.Removed, strings.Join(left, ", "))
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}

func newRaftTransferLeaderCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "transfer-leader [ID]",
		Short: "Hand raft leadership to server ID, or to the most up-to-date follower (run on any server)",
		Long: `Hand raft leadership over, before maintenance of the leader's host for
example. With ID, leadership goes to that voter; without, raft picks the
follower most up to date. Run it on any server: a follower forwards the
request to the leader. The plugins move with leadership.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, done, err := dialAdmin(cmd.Context(), dataDir)
			if err != nil {
				return err
			}
			defer done()
			var id string
			if len(args) == 1 {
				id = args[0]
			}
			resp, err := c.TransferLeader(ctx, id)
			if err != nil {
				return err
			}
			to := resp.To
			if to == "" {
				to = "(election in progress)"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "leadership moved from %s to %s (term %d)\n", resp.From, to, resp.Term)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	return cmd
}

// dialAdmin opens the local server's admin socket for one call bounded by
// adminTimeout; done closes both.
func dialAdmin(ctx context.Context, dataDir string) (*ops.Client, context.Context, func(), error) {
	c, err := ops.Dial(dataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, adminTimeout)
	return c, ctx, func() { cancel(); c.Close() }, nil
}
