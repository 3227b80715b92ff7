package ops

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keelson/keelson/core/pluginstore"
)

// servePluginStore serves n's admin service, with a plugin store, on the
// raft port as core/server does, and returns the store.
func servePluginStore(t *testing.T, n *testNode) *pluginstore.Store {
	t.Helper()
	store, err := pluginstore.New(filepath.Join(n.dir, "plugin-store"), pluginstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	svc := NewService(ServiceConfig{Node: n.node, Store: n.store, PluginStore: store})
	g := NewGRPCServer(svc)
	go g.Serve(n.node.AdminListener())
	t.Cleanup(func() { g.Stop(); svc.Close() })
	return store
}

func TestPluginBlobsTravelBetweenServers(t *testing.T) {
	nodes := startCluster(t, 3)
	stores := make([]*pluginstore.Store, len(nodes))
	for i, n := range nodes {
		stores[i] = servePluginStore(t, n)
	}
	blob := bytes.Repeat([]byte("\x7fELF plugin "), 100000) // several chunks
	s := sha256.Sum256(blob)
	sum := hex.EncodeToString(s[:])
	if err := stores[1].Put(sum, bytes.NewReader(blob)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	waitFor(t, "n2 to learn the configuration", func() bool {
		f := nodes[2].node.Raft().GetConfiguration()
		return f.Error() == nil && len(f.Configuration().Servers) == 3
	})

	// n2 lacks it; n0 does too, but n1 has it.
	if err := FetchPluginBlobFromPeers(ctx, nodes[2].node, stores[2], sum); err != nil {
		t.Fatalf("fetching from the peers: %v", err)
	}
	if !stores[2].Has(sum) {
		t.Fatal("the fetched blob is not in the store")
	}

	// A checksum no server has: an error naming every server asked.
	missing := strings.Repeat("ab", 32)
	err := FetchPluginBlobFromPeers(ctx, nodes[0].node, stores[0], missing)
	for _, want := range []string{"is on no other server", "n1:", "n2:", "not in this server's store"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("fetching a blob nobody has: %v, want it to say %q", err, want)
		}
	}
	if stores[0].Has(missing) {
		t.Error("a missing blob was stored")
	}
}

// A server whose blob does not match its name (a damaged disk, a lying
// peer) cannot make another store it: the receiver hashes what it gets.
func TestFetchedBlobIsVerified(t *testing.T) {
	nodes := startCluster(t, 2)
	good := servePluginStore(t, nodes[0])
	other := servePluginStore(t, nodes[1])
	want := []byte("the real plugin")
	s := sha256.Sum256(want)
	sum := hex.EncodeToString(s[:])
	if err := good.Put(sum, bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	// Corrupt the serving copy behind the store's back.
	if err := forceWrite(good.Path(sum), []byte("a trojan")); err != nil {
		t.Fatal(err)
	}
	dial := func(ctx context.Context, a string) (net.Conn, error) { return nodes[1].node.DialAdmin(ctx, a) }
	err := FetchPluginBlob(context.Background(), dial, nodes[0].node.Addr(), other, sum)
	var mm *pluginstore.MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("fetching a corrupted blob: %v, want a checksum mismatch", err)
	}
	if other.Has(sum) {
		t.Error("a corrupted blob was stored under the checksum")
	}
}

// forceWrite replaces a read-only file's content.
func forceWrite(path string, b []byte) error {
	if err := os.Chmod(path, 0o600); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
