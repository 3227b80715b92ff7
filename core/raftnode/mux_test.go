package raftnode

import (
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// TestMuxBoundsUnauthenticatedConnections floods the raft port with
// connections that never send their kind byte (what anyone who can reach
// the port can do without a certificate): at most maxPending of them get a
// goroutine, the rest are closed at once, and each one held is dropped
// after the handshake timeout. A real peer gets through once slots free up.
func TestMuxBoundsUnauthenticatedConnections(t *testing.T) {
	const maxPending = 4
	m, err := newMux("127.0.0.1:0", "", nil, testLogger(t), muxLimits{handshakeTimeout: 500 * time.Millisecond, maxPending: maxPending})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	before := runtime.NumGoroutine()
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for range maxPending {
		c, err := net.Dial("tcp", m.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	waitFor(t, 10*time.Second, "the silent connections to take every slot", func() bool { return len(m.pending) == maxPending })
	// Beyond the limit, connections are closed without being read.
	for range 50 {
		c, err := net.Dial("tcp", m.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // deadlock guard
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("a connection over the limit was not closed: %v", err)
		}
		c.Close()
	}
	if grown := runtime.NumGoroutine() - before; grown > maxPending+2 {
		t.Fatalf("%d goroutines more after 54 connections, want at most %d", grown, maxPending+2)
	}
	// The silent ones time out and free their slots.
	for _, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("a silent connection outlived the handshake timeout: %v", err)
		}
	}
	c, err := net.Dial("tcp", m.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{connRaft}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-m.raft:
		got.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a real peer was not routed after the flood")
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
