package server

import (
	"context"

	"github.com/keelson/keelson/internal/debugserver"
)

// serveDebug serves Go's profiles on --debug-listen until ctx ends.
func (s *Server) serveDebug(ctx context.Context) error {
	return debugserver.Serve(ctx, s.log, "--debug-listen", s.cfg.DebugListen)
}
