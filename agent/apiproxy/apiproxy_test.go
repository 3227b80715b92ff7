package apiproxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
)

// echoServer answers every connection with its name.
func echoServer(t *testing.T, name string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
	return l
}

func ask(t *testing.T, p *Proxy) string {
	t.Helper()
	c, err := net.Dial("tcp", p.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestFailsOverToTheNextServer(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	defer b.Close()
	p, err := Listen([]string{a.Addr().String(), b.Addr().String()}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx)
	if got := ask(t, p); got != "a" {
		t.Fatalf("first server: got %q", got)
	}
	a.Close() // the first server goes away
	if got := ask(t, p); got != "b" {
		t.Fatalf("after the first server died: got %q, want b", got)
	}
	if s := p.Servers(); s[0] != b.Addr().String() {
		t.Errorf("server in use %v, want b first", s)
	}
	// A new list keeps the server in use first.
	c := echoServer(t, "c")
	defer c.Close()
	p.SetServers([]string{c.Addr().String(), b.Addr().String()})
	if got := ask(t, p); got != "b" {
		t.Errorf("after SetServers: got %q, want the server in use", got)
	}
}
