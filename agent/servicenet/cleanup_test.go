package servicenet

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/agent/netpol"
	"github.com/keelson/keelson/agent/proxy"
)

// TestCleanupRemovesBothProxyModes is what `keelson agent --cleanup`
// runs: on a node where the proxy and the policy enforcer ran in either
// mode (here both leftovers at once), the nftables tables and the iptables
// chains go, and a second run finds nothing to do.
func TestCleanupRemovesBothProxyModes(t *testing.T) {
	if !netnstest.Isolate(t) {
		return
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft to inspect the tables (scripts/install-deps.sh installs nftables)")
	}
	netnstest.Run(t, "nft", "add", "table", "ip", proxy.NFTTableName)
	netnstest.Run(t, "nft", "add", "chain", "ip", proxy.NFTTableName, "services")
	netnstest.Run(t, "iptables", "-t", "nat", "-N", "KEELSON-SERVICES")
	netnstest.Run(t, "nft", "add", "table", "ip", netpol.NFTTableName)
	netnstest.Run(t, "nft", "add", "chain", "ip", netpol.NFTTableName, "netpol")
	netnstest.Run(t, "iptables", "-N", "KEELSON-NETPOL")
	for range 2 {
		if err := Cleanup(context.Background(), Config{}); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}
	if out := netnstest.Run(t, "nft", "list", "tables"); strings.Contains(out, proxy.NFTTableName) {
		t.Errorf("the proxy's or the policies' nftables table survived cleanup:\n%s", out)
	}
	if out := netnstest.Run(t, "iptables-save", "-t", "filter"); strings.Contains(out, "KEELSON-NETPOL") {
		t.Errorf("the policies' iptables chain survived cleanup:\n%s", out)
	}
	if out := netnstest.Run(t, "iptables-save", "-t", "nat"); strings.Contains(out, "KEELSON-SERVICES") {
		t.Errorf("the proxy's iptables chain survived cleanup:\n%s", out)
	}
}
