package server

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/core/liveness"
	"github.com/keelson/keelson/core/raftnode"
)

// runLiveness runs the node liveness check (gossip membership into Node
// Ready conditions) while this server is the raft leader, restarting it in
// each new term, until ctx ends. It starts once the local API server is
// ready.
func (s *Server) runLiveness(ctx context.Context, apiReady <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-apiReady:
	}
	client, err := kubernetes.NewForConfig(s.adminRESTConfig("keelson-node-liveness"))
	if err != nil {
		return fmt.Errorf("node liveness: API client: %w", err)
	}
	cfg := liveness.Config{GracePeriod: s.cfg.NodeMonitorGracePeriod.Duration, Logger: s.log}
	events, unsubscribe := s.raft.Subscribe()
	defer unsubscribe()
	return followLeadership(ctx, events, func(ctx context.Context) {
		if err := liveness.Run(ctx, cfg, s.pool, client); err != nil {
			s.log.Error("node liveness stopped", "error", err)
		}
	})
}

// followLeadership runs work in its own goroutine for each term this server
// leads, cancelling it when leadership is lost or the term changes, and
// returns once ctx ends and the last run has returned.
func followLeadership(ctx context.Context, events <-chan raftnode.LeadershipEvent, work func(context.Context)) error {
	var (
		term uint64 // the term work runs in; 0: not running
		stop = func() {}
	)
	defer func() { stop() }()
	for {
		var ev raftnode.LeadershipEvent
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-events:
			if !ok {
				return nil
			}
			ev = e
		}
		if term != 0 && (!ev.IsLeader || ev.Term != term) {
			stop()
			term, stop = 0, func() {}
		}
		if !ev.IsLeader || term != 0 {
			continue
		}
		term, stop = ev.Term, start(ctx, work)
	}
}

// start runs work in a goroutine and returns the function that cancels it
// and waits for it to return.
func start(ctx context.Context, work func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
