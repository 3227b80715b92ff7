package server

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/keelson/keelson/plugins/host"
)

var (
	pluginMetricsOnce sync.Once
	pluginMetricsRead atomic.Pointer[func(context.Context) []host.PluginMetrics]
)

// servePluginMetrics puts the plugins' metrics on kube-apiserver's
// /metrics (its process-global registry): registered once per process,
// reading from the latest plugin host. Only the leader runs plugins; a
// follower's /metrics has none.
func servePluginMetrics(read func(context.Context) []host.PluginMetrics, log *slog.Logger) {
	pluginMetricsRead.Store(&read)
	pluginMetricsOnce.Do(func() {
		c := host.NewMetricsCollector(func(ctx context.Context) []host.PluginMetrics {
			if f := pluginMetricsRead.Load(); f != nil {
				return (*f)(ctx)
			}
			return nil
		}, log)
		if err := legacyregistry.Registerer().Register(c); err != nil {
			log.Warn("plugin metrics not served", "err", err)
		}
	})
}
