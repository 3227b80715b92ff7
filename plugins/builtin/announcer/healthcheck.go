package announcer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// healthChecks serves spec.healthCheckNodePort of every
// externalTrafficPolicy: Local LoadBalancer Service on this node, as
// kube-proxy does: 200 while the node has a ready local endpoint of the
// Service, 503 otherwise, with a JSON body naming the Service and the
// count. An external load balancer uses it to send traffic only to nodes
// that can serve it.
type healthChecks struct {
	log  *slog.Logger
	addr string // host the listeners bind ("" = all)

	mu      sync.Mutex
	servers map[int32]*hcServer
}

type hcServer struct {
	srv   *http.Server
	key   string // namespace/name
	count int
}

// set makes the node serve want (port -> service key) with the given local
// endpoint counts (by service key).
func (h *healthChecks) set(want map[int32]string, counts map[string]int) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for port, s := range h.servers {
		if want[port] != s.key {
			shutdown(s.srv)
			delete(h.servers, port)
		}
	}
	for port, key := range want {
		s := h.servers[port]
		if s == nil {
			var err error
			if s, err = h.listen(port, key); err != nil {
				errs = append(errs, err)
				continue
			}
			h.servers[port] = s
		}
		s.count = counts[key]
	}
	return errors.Join(errs...)
}

func (h *healthChecks) listen(port int32, key string) (*hcServer, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(h.addr, strconv.Itoa(int(port))))
	if err != nil {
		return nil, fmt.Errorf("serving healthCheckNodePort %d of %s: %w", port, key, err)
	}
	s := &hcServer{key: key}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { h.serve(w, port) }), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Warn("healthCheckNodePort server", "port", port, "service", key, "err", err)
		}
	}()
	return s, nil
}

func (h *healthChecks) serve(w http.ResponseWriter, port int32) {
	h.mu.Lock()
	s := h.servers[port]
	var key string
	var count int
	if s != nil {
		key, count = s.key, s.count
	}
	h.mu.Unlock()
	ns, name, _ := strings.Cut(key, "/")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if count == 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"service":             map[string]string{"namespace": ns, "name": name},
		"localEndpoints":      count,
		"serviceProxyHealthy": true,
	})
}

func (h *healthChecks) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, s := range h.servers {
		shutdown(s.srv)
		delete(h.servers, port)
	}
}

func shutdown(s *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}
