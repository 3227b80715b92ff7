// Package debugserver serves Go's pprof profiles on an operator-chosen
// address (--debug-listen), for the server and the node agent alike.
package debugserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Serve serves /debug/pprof/ on addr until ctx ends. flag names the
// setting in errors and warnings. An empty addr serves nothing.
func Serve(ctx context.Context, log *slog.Logger, flag, addr string) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s %s: %w", flag, addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("serving pprof", "address", l.Addr().String())
	// The profiles are unauthenticated and reveal memory contents.
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			log.Warn(flag+" is not a loopback address: profiles reveal memory contents; keep it on 127.0.0.1 or firewall it", "address", addr)
		}
	}
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("debug server on %s: %w", addr, err)
	}
	return nil
}
