package servicenet

import (
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/keelson/keelson/agent/internal/netnstest"
	"github.com/keelson/keelson/agent/proxy"
)

// TestCleanupRemovesBothProxyModes is what `keelson agent --cleanup`
// runs: on a node where the proxy ran in either mode (here both leftovers
// at once), the nftables table and the iptables chains go, and a second
// run finds nothing to do.
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
	for range 2 {
		if err := Cleanup(context.Background(), Config{}); err != nil {
			t.Fatalf("cleanup: %v", err)
		}
	}
	if out := netnstest.Run(t, "nft", "list", "tables"); strings.Contains(out, proxy.NFTTableName) {
		t.Errorf("the proxy's nftables table survived cleanup:\n%s", out)
	}
	if out := netnstest.Run(t, "iptables-save", "-t", "nat"); strings.Contains(out, "KEELSON-SERVICES") {
		t.Errorf("the proxy's iptables chain survived cleanup:\n%s", out)
	}
}
