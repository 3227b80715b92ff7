package server

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/core/liveness"
	"github.com/keelson/keelson/core/membership"
	"github.com/keelson/keelson/core/raftnode"
)

// leaderDuty is work the raft leader does for exactly one term: started when
// this server's leadership is established (raft's NotifyCh, through
// raftnode.Subscribe) and cancelled when it is lost or the term changes,
// as Nomad's leader.go does. run returns once ctx ends.
type leaderDuty struct {
	name string
	run  func(ctx context.Context, term uint64)
}

// leaderDuties is every duty this server has while it leads. Those that
// talk to the Kubernetes API wait in their term until the local API server
// is ready (api.ready); api is nil without an API server.
func (s *Server) leaderDuties(api *apiDuties) []leaderDuty {
	duties := []leaderDuty{
		// Lease expiry: deadlines live on the leader, expiries are proposed.
		{"lessor", s.kv.RunLessor},
		// History compaction to Store.HistoryRevisions.
		{"compactor", s.kv.RunCompactor},
		// Raft voters in step with the live servers of the gossip pool.
		{"voter reconciler", func(ctx context.Context, _ uint64) {
			_ = membership.Reconcile(ctx, s.pool, membership.FromRaft(s.raft), proveServerByPeerTLS(s.peerTLS))
		}},
	}
	if api == nil {
		return duties
	}
	return append(duties,
		// Every enabled plugin, with credentials bound to the term.
		leaderDuty{"plugin host", func(ctx context.Context, term uint64) {
			if api.wait(ctx) {
				api.host.lead(ctx, term)
			}
		}},
		// Gossip membership into Node Ready conditions.
		leaderDuty{"node liveness", func(ctx context.Context, _ uint64) {
			if !api.wait(ctx) {
				return
			}
			cfg := liveness.Config{GracePeriod: s.cfg.NodeMonitorGracePeriod.Duration, Logger: s.log}
			if err := liveness.Run(ctx, cfg, s.pool, api.client); err != nil {
				s.log.Error("node liveness stopped", "error", err)
			}
		}},
	)
}

// runLeaderDuties runs every leader duty in each term this server leads,
// until ctx ends and the last term's duties have returned. apiReady is nil
// without an API server. It fails only if the API clients cannot be built.
func (s *Server) runLeaderDuties(ctx context.Context, apiReady <-chan struct{}) error {
	var api *apiDuties
	errc := make(chan error, 1)
	if apiReady != nil {
		api = &apiDuties{ready: make(chan struct{})}
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-apiReady:
			}
			if err := s.buildAPIDuties(ctx, api); err != nil {
				errc <- err
			}
		}()
	}
	duties := s.leaderDuties(api)
	events, unsubscribe := s.raft.Subscribe()
	defer unsubscribe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- raftnode.FollowLeadership(ctx, events, func(ctx context.Context, term uint64) {
			s.lead(ctx, term, duties)
		})
	}()
	select {
	case err := <-done:
		return err
	case err := <-errc:
		cancel()
		<-done
		return err
	}
}

// lead runs every duty for one term and returns once all have returned.
func (s *Server) lead(ctx context.Context, term uint64, duties []leaderDuty) {
	start := time.Now()
	s.log.Info("leader duties starting", "term", term, "duties", len(duties))
	var wg sync.WaitGroup
	for _, d := range duties {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(ctx, term)
		}()
	}
	wg.Wait()
	s.log.Info("leader duties stopped", "term", term, "led", time.Since(start).Round(time.Millisecond))
}

// apiDuties holds what the duties that talk to the Kubernetes API share,
// built once the local API server is ready.
type apiDuties struct {
	ready  chan struct{} // closed once host and client are set
	host   *pluginHost
	client kubernetes.Interface
}

// wait blocks until the API duties are built; false if ctx ended first.
func (a *apiDuties) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-a.ready:
		return true
	}
}

func (s *Server) buildAPIDuties(ctx context.Context, api *apiDuties) error {
	admin := s.adminRESTConfig("keelson-plugin-host")
	h, err := s.newPluginHost(admin, admin.Host)
	if err != nil {
		return fmt.Errorf("plugin host: %w", err)
	}
	client, err := kubernetes.NewForConfig(s.adminRESTConfig("keelson-node-liveness"))
	if err != nil {
		return fmt.Errorf("node liveness: API client: %w", err)
	}
	go h.status.run(ctx)
	// Every server keeps the installed plugins' executables; the leader
	// runs them (pluginHost.lead).
	go h.installed.run(ctx)
	if ra := h.sup.RunAs(); ra != nil {
		go func() {
			<-ctx.Done()
			os.RemoveAll(ra.ExecDir)
		}()
	}
	api.host, api.client = h, client
	close(api.ready)
	return nil
}
