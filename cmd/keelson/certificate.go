package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/keelson/keelson/core/pki"
	"github.com/spf13/cobra"
)

func newCertificateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certificate",
		Short: "Inspect a server's certificates",
	}
	cmd.AddCommand(newCertificateCheckCommand())
	return cmd
}

func newCertificateCheckCommand() *cobra.Command {
	var dataDir, output string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "List the server's certificates, when each expires and is renewed, and what needs an operator",
		Long: `List the certificates in DATA_DIR/pki: the two CAs and the server's own
certificates (API serving, admin and kubelet client, front-proxy client, peer).
A running server renews its own certificates at two thirds of their lifetime
without a restart; the CAs are never replaced automatically, so a CA within
30 days of its expiry is reported as a WARNING (the server logs it too). It
reads the files only and works with the server stopped. The exit status is 1
when anything needs an operator.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: use table or json", output)
			}
			sts, err := pki.CheckExpiry(filepath.Join(dataDir, "pki"), time.Now())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(sts); err != nil {
					return err
				}
			} else {
				printCertificates(cmd.OutOrStdout(), sts, time.Now())
			}
			for _, st := range sts {
				if st.Warning != "" {
					return fmt.Errorf("certificates need attention (see WARNING above)")
				}
			}
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	return cmd
}

func printCertificates(w io.Writer, sts []pki.CertStatus, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSUBJECT\tEXPIRES\tRENEWAL\tSTATUS")
	for _, st := range sts {
		renewal := "never (a CA)"
		if st.Renewable {
			renewal = "automatic, from " + st.RenewAt.UTC().Format(time.RFC3339)
		}
		status := "ok"
		if st.Warning != "" {
			status = "WARNING: " + st.Warning
		}
		fmt.Fprintf(tw, "%s\t%s\t%s (%s)\t%s\t%s\n", st.Name, st.Subject, st.NotAfter.UTC().Format(time.RFC3339), timeLeft(st.NotAfter.Sub(now)), renewal, status)
	}
	tw.Flush()
}

// timeLeft says how long until an expiry, in days when that is long.
func timeLeft(d time.Duration) string {
	switch {
	case d <= 0:
		return "expired"
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	}
	return "in " + d.Round(time.Second).String()
}
