package server

import (
	"context"

	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/keelson/keelson/core/storemetrics"
)

// serveStoreMetrics adds the store's metrics to kube-apiserver's /metrics
// (its process-global registry) and counts leader changes until ctx ends.
func (s *Server) serveStoreMetrics(ctx context.Context) error {
	sink := storemetrics.NewSink()
	c := storemetrics.NewCollector(storemetrics.Sources{
		Raft: s.raft.Stats,
		Store: func() (int, int64, int64) {
			v := s.store.View()
			return v.Keys(), v.Size(), v.Rev()
		},
		Watchers: s.kv.Watchers,
		WatchQueue: func() storemetrics.WatchQueue {
			q := s.kv.WatchQueue()
			we, wb, sb := s.kv.WatchLimits()
			return storemetrics.WatchQueue{Events: q.Events, Bytes: q.Bytes, Stalled: q.Stalled, Compacted: q.Compacted, WatchEvents: we, WatchBytes: wb, StreamBytes: sb}
		},
		History: func() storemetrics.History {
			return storemetrics.History{Bytes: s.store.View().HistoryBytes(), Limit: s.kv.HistoryLimit()}
		},
		Members: func() []storemetrics.Member {
			if s.pool == nil {
				return nil
			}
			var out []storemetrics.Member
			for _, m := range s.pool.Members() {
				out = append(out, storemetrics.Member{Role: string(m.Role), Status: string(m.Status)})
			}
			return out
		},
	})
	if err := legacyregistry.Registerer().Register(sink); err != nil {
		s.log.Warn("store metrics not served", "err", err)
		return nil
	}
	if err := legacyregistry.Registerer().Register(c); err != nil {
		s.log.Warn("store metrics not served", "err", err)
		return nil
	}
	storemetrics.Install(sink)
	c.Run(ctx, s.raft.Raft())
	return nil
}
