package host

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keelson/keelson/plugins/proto"
)

// metricsTimeout bounds one plugin's answer to a scrape: a hung plugin
// leaves its metrics out rather than stalling the host's /metrics.
const metricsTimeout = 2 * time.Second

// PluginMetrics is one plugin's metrics, in the Prometheus text format, or
// why they could not be read.
type PluginMetrics struct {
	Name string
	Text []byte
	Err  error
}

// setClient records (or, with nil, forgets) the running client of a plugin.
func (s *Supervisor) setClient(name string, c *proto.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c == nil {
		delete(s.clients, name)
		return
	}
	if s.clients == nil {
		s.clients = map[string]*proto.Client{}
	}
	s.clients[name] = c
}

// Metrics reads the metrics of every running plugin, all at once, each
// within metricsTimeout. A plugin built with an SDK that exposes none is
// left out without an error.
func (s *Supervisor) Metrics(ctx context.Context) []PluginMetrics {
	s.mu.Lock()
	clients := make(map[string]*proto.Client, len(s.clients))
	for n, c := range s.clients {
		clients[n] = c
	}
	s.mu.Unlock()
	out := make([]PluginMetrics, 0, len(clients))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, c := range clients {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, metricsTimeout)
			defer cancel()
			text, err := c.Metrics(cctx)
			if status.Code(err) == codes.Unimplemented {
				return
			}
			mu.Lock()
			out = append(out, PluginMetrics{Name: name, Text: text, Err: err})
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}
