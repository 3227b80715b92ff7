package debugserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestServe(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, log, "--debug-listen", ""); err != nil {
		t.Fatalf("no address: %v, want nothing served and no error", err)
	}
	if err := Serve(ctx, log, "--debug-listen", "256.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--debug-listen") {
		t.Fatalf("a bad address: %v, want an error naming the flag", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, log, "--debug-listen", addr) }()
	var body string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		break
	}
	if body == "" {
		t.Fatal("the pprof handler never answered")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after its context ended: %v", err)
	}
}
