package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/server"
	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// clusterReport is `keelson cluster status -o json`.
type clusterReport struct {
	Raft       *ops.ClusterStatus `json:"raft"`
	Kubernetes *ops.KubeStatus    `json:"kubernetes,omitempty"`
	// KubernetesError says why Kubernetes is missing.
	KubernetesError string `json:"kubernetesError,omitempty"`
}

func newClusterCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the whole cluster",
	}
	cmd.AddCommand(newClusterStatusCommand())
	return cmd
}

func newClusterStatusCommand() *cobra.Command {
	var dataDir, output, kubeconfig string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Servers, nodes, plugins, certificates, store size and snapshots in one view",
		Long: `Show the cluster's health in one view, as the server on --data-dir gathers it:

  servers       every raft server's own report (role, term, applied index, lag
                behind the leader's commit index, last contact as the leader
                sees it, version); a server that does not answer is shown with
                the reason
  nodes         every Node's Ready condition, gossip status and version
  plugins       every plugin's state, restarts and last error
  store         each server's store size against --store-quota-bytes
  snapshots     each server's newest raft snapshot
  certificates  each server's soonest certificate expiry, and warnings

The Kubernetes part uses --kubeconfig (default: the server's admin
kubeconfig); when the API does not answer, the raft part is still shown.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			rep, err := gatherClusterReport(cmd.Context(), dataDir, kubeconfig)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printClusterReport(cmd.OutOrStdout(), rep, time.Now())
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig for the Kubernetes part (default: the server's admin kubeconfig in --data-dir)")
	return cmd
}

func gatherClusterReport(ctx context.Context, dataDir, kubeconfig string) (*clusterReport, error) {
	c, ctx, done, err := dialAdmin(ctx, dataDir)
	if err != nil {
		return nil, err
	}
	defer done()
	raft, err := c.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	rep := &clusterReport{Raft: raft}
	if kubeconfig == "" {
		kubeconfig = server.AdminKubeconfig(dataDir)
	}
	rep.Kubernetes, err = readKube(ctx, kubeconfig, raft.Members)
	if err != nil {
		rep.KubernetesError = err.Error()
	}
	return rep, nil
}

func readKube(ctx context.Context, kubeconfig string, members []ops.GossipMember) (*ops.KubeStatus, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	rc.Timeout = 10 * time.Second
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dc, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return ops.ReadKube(ctx, kc, dc, members)
}

func printClusterReport(w io.Writer, r *clusterReport, now time.Time) {
	printServers(w, r.Raft)
	fmt.Fprintln(w)
	if r.Kubernetes == nil {
		fmt.Fprintf(w, "NODES AND PLUGINS: unavailable: %s\n", r.KubernetesError)
	} else {
		printNodes(w, r.Kubernetes, r.Raft.Members)
		fmt.Fprintln(w)
		printPlugins(w, r.Kubernetes.Plugins)
	}
	fmt.Fprintln(w)
	printServerResources(w, r.Raft, now)
}

func printServers(w io.Writer, cs *ops.ClusterStatus) {
	leader := cs.LeaderID
	if leader == "" {
		leader = "none (no quorum? see `keelson raft peers`)"
	}
	fmt.Fprintf(w, "SERVERS (leader %s, term %d, store feature level %s; last contact as %s sees it)\n", leader, cs.Term, clusterLevel(cs.FeatureLevel), cs.View)
	levels := map[string]int{}
	for _, m := range cs.Members {
		if m.Role == "server" {
			levels[m.Name] = m.FeatureLevel
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tVOTER\tTERM\tAPPLIED\tLAG\tLAST CONTACT\tGOSSIP\tVERSION\tLEVEL")
	for _, s := range cs.Servers {
		role, term, applied, lag, version := "down", "-", "-", "-", "-"
		if st := s.Status; st != nil {
			role, term, applied, version = strings.ToLower(st.State), fmt.Sprint(st.Term), fmt.Sprint(st.AppliedIndex), orDash(st.Version)
		}
		if s.Lag != nil {
			lag = fmt.Sprint(*s.Lag)
		}
		last := contact(s.Peer)
		if s.Contact == ops.ContactSelf {
			last = "(reporting)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Address, role, yesNo(s.Voter), term, applied, lag, last, orDash(s.Gossip), version, levelText(levels[s.ID]))
	}
	tw.Flush()
	for _, s := range cs.Servers {
		if s.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", s.ID, s.Error)
		}
		if st := s.Status; st != nil && st.TimeoutMultiplier > 1 {
			fmt.Fprintf(w, "  %s: raft timeouts scaled x%d: its own scheduling runs late (CPU starved?), so it waits longer before calling an election\n", s.ID, st.TimeoutMultiplier)
		}
	}
	if cs.FeatureLevelError != "" {
		fmt.Fprintf(w, "  store feature level: %s\n", cs.FeatureLevelError)
	}
}

func clusterLevel(l int) string {
	if l <= 0 {
		return "unknown"
	}
	return fmt.Sprint(l)
}

// levelText is a store feature level; a server that advertises none (a
// version before levels) is at level 1 for the feature gate.
func levelText(l int) string {
	if l <= 0 {
		return "1 (none advertised)"
	}
	return fmt.Sprint(l)
}

func printNodes(w io.Writer, k *ops.KubeStatus, members []ops.GossipMember) {
	fmt.Fprintln(w, "NODES")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tREADY\tGOSSIP\tVERSION")
	seen := map[string]bool{}
	for _, n := range k.Nodes {
		seen[n.Name] = true
		ready := n.Ready
		if n.Reason != "" && n.Ready != "True" {
			ready += " (" + n.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, ready, orDash(n.Gossip), orDash(n.Version))
	}
	// An agent in the pool without a Node has not registered (yet).
	for _, m := range members {
		if m.Role != "server" && !seen[m.Name] {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, "no Node object", m.Status, "-")
		}
	}
	tw.Flush()
}

func printPlugins(w io.Writer, plugins []ops.PluginState) {
	fmt.Fprintln(w, "PLUGINS")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tNODE\tSTATE\tREADY\tRESTARTS\tLAST ERROR")
	for _, p := range plugins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", p.Name, orDash(p.Node), p.State, yesNo(p.Ready), p.Restarts, orDash(oneLine(p.LastError, 80)))
	}
	tw.Flush()
}

// printServerResources prints each answering server's store size, newest
// snapshot and soonest certificate expiry.
func printServerResources(w io.Writer, cs *ops.ClusterStatus, now time.Time) {
	fmt.Fprintln(w, "STORE, SNAPSHOTS AND CERTIFICATES")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tSTORE SIZE\tQUOTA\tLAST SNAPSHOT\tSOONEST CERT EXPIRY")
	var warnings []string
	for _, s := range cs.Servers {
		st := s.Status
		if st == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\n", s.ID)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, bytesIEC(st.StoreBytes), quota(st), snapshotText(st.LastSnapshot, now), soonestCert(st, now))
		for _, c := range st.Certificates {
			if c.Warning != "" {
				warnings = append(warnings, fmt.Sprintf("  %s: %s (%s): %s", s.ID, c.Name, c.File, c.Warning))
			}
		}
		if st.CertificatesError != "" {
			warnings = append(warnings, fmt.Sprintf("  %s: certificates: %s", s.ID, st.CertificatesError))
		}
	}
	tw.Flush()
	for _, l := range warnings {
		fmt.Fprintln(w, l)
	}
}

func quota(st *ops.ServerStatus) string {
	if st.QuotaBytes <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%.1f%% used)", bytesIEC(st.QuotaBytes), 100*float64(st.StoreBytes)/float64(st.QuotaBytes))
}

func snapshotText(s *ops.SnapshotInfo, now time.Time) string {
	if s == nil {
		return "none yet"
	}
	out := fmt.Sprintf("index %d", s.Index)
	if !s.Time.IsZero() {
		out += fmt.Sprintf(", %s ago", now.Sub(s.Time).Round(time.Second))
	}
	return out
}

func soonestCert(st *ops.ServerStatus, now time.Time) string {
	if len(st.Certificates) == 0 {
		return "-"
	}
	first := st.Certificates[0]
	for _, c := range st.Certificates[1:] {
		if c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	left := first.NotAfter.Sub(now)
	if left <= 0 {
		return fmt.Sprintf("%s EXPIRED %s ago (%s)", first.Name, roundDays(-left), first.NotAfter.UTC().Format(time.DateOnly))
	}
	return fmt.Sprintf("%s in %s (%s)", first.Name, roundDays(left), first.NotAfter.UTC().Format(time.DateOnly))
}

func roundDays(d time.Duration) string {
	if d < 48*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
