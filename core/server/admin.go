package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/keelson/keelson/config"
	"github.com/keelson/keelson/core/ops"
	"github.com/keelson/keelson/core/snapshots"
	"google.golang.org/grpc"
)

// serveAdmin serves the operator commands (`keelson raft`, `keelson snapshot
// save`) on DATA_DIR/admin.sock until ctx ends. It is a gRPC server of its
// own, never on the TCP etcd listener, so only a local user who can open the
// data dir reaches it. It returns nil when ctx ends and an error only when it
// cannot serve.
func (s *Server) serveAdmin(ctx context.Context) error {
	sock := ops.AdminSocket(s.cfg.DataDir)
	if err := removeStaleSocket(sock); err != nil {
		return err
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening on admin socket %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("restricting admin socket %s: %w", sock, err)
	}
	svc := ops.NewService(ops.ServiceConfig{
		Node: s.raft, Store: s.store, Gossip: s.gossipStatus,
		DataDir: s.cfg.DataDir, PKIDir: filepath.Join(s.cfg.DataDir, "pki"),
		Version: s.opts.Version, QuotaBytes: s.cfg.Store.QuotaBytes, Members: s.gossipMembers,
		PluginStore:  s.pluginStore,
		FeatureLevel: s.storeFeatureLevel,
	})
	defer svc.Close()
	if s.cfg.Snapshots.Schedule != "" {
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		if err := s.scheduleSnapshots(ctx, svc); err != nil {
			return err
		}
	}
	g := ops.NewGRPCServer(svc)
	errc := make(chan error, 2)
	go func() { errc <- g.Serve(l) }()
	// Other servers reach this one over the raft port (mutual TLS between
	// servers): a follower forwards leader-only commands, and `keelson
	// cluster status` gathers every server's own report.
	go func() { errc <- g.Serve(s.raft.AdminListener()) }()
	select {
	case err := <-errc:
		g.Stop()
		<-errc
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serving the admin service (%s and the raft port): %w", sock, err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop() // a snapshot being streamed to a stuck client
	}
	<-errc
	<-errc
	return nil
}

// gossipStatus is the pool's view of every server, by name.
func (s *Server) gossipStatus() map[string]string {
	out := map[string]string{}
	if s.pool == nil {
		return out
	}
	for _, m := range s.pool.Members() {
		if m.IsServer() {
			out[m.Name] = string(m.Status)
		}
	}
	return out
}

// scheduleSnapshots takes the scheduled snapshots (--snapshot-schedule) in
// the background until ctx ends: each is saved as `keelson snapshot save`
// saves one, through the same admin service.
func (s *Server) scheduleSnapshots(ctx context.Context, svc *ops.Service) error {
	sched, err := config.ParseSnapshotSchedule(s.cfg.Snapshots.Schedule)
	if err != nil {
		return fmt.Errorf("snapshots.schedule (--snapshot-schedule): %w", err)
	}
	save := func(ctx context.Context, path string) error {
		sf, err := ops.SaveSnapshotFile(path, func(w io.Writer) error {
			return svc.SaveSnapshot(ctx, &ops.SaveSnapshotRequest{}, func(c *ops.SnapshotChunk) error {
				_, err := w.Write(c.Data)
				return err
			})
		})
		if err != nil {
			return err
		}
		return sf.Close()
	}
	dir := config.SnapshotDir(s.cfg.DataDir, s.cfg.Snapshots.Dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshots.dir (--snapshot-dir): %w", err)
	}
	s.log.Info("scheduled snapshots", "schedule", s.cfg.Snapshots.Schedule, "retention", s.cfg.Snapshots.Retention, "dir", dir)
	go func() {
		err := snapshots.Run(ctx, snapshots.Options{Dir: dir, Node: s.cfg.NodeName, Schedule: sched,
			Retention: s.cfg.Snapshots.Retention, Save: save, Logger: s.log.With("component", "snapshots")})
		if err != nil {
			s.log.Error("scheduled snapshots stopped", "err", err)
		}
	}()
	return nil
}

// gossipMembers is the pool's view of every member, servers and agents.
func (s *Server) gossipMembers() []ops.GossipMember {
	if s.pool == nil {
		return nil
	}
	var out []ops.GossipMember
	for _, m := range s.pool.Members() {
		out = append(out, ops.GossipMember{Name: m.Name, Role: string(m.Role), Status: string(m.Status), Address: m.SerfAddr, FeatureLevel: m.FeatureLevel})
	}
	return out
}
