package raftnode

import (
	"io"
	"testing"
	"time"
)

// A caller's own service rides the raft port (PeerListener/DialPeer), and
// stopping it leaves raft running.
func TestPeerListenerSharesTheRaftPort(t *testing.T) {
	cfg := fastConfig(t, "p1", t.TempDir())
	cfg.Bootstrap = true
	n := mustNew(t, cfg, newKV())
	t.Cleanup(func() { n.Shutdown() })
	waitLeader(t, n)
	ln := n.PeerListener()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	ctx := ctxT(t, 10*time.Second)
	c, err := n.DialPeer(ctx, n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the peer service: %q %v", buf, err)
	}
	c.Close()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.Apply(ctx, setCmd("k", "v")); err != nil {
		t.Fatalf("raft after closing the peer listener: %v", err)
	}
}
