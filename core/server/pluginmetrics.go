package server

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/keelson/keelson/plugins/host"
)

// pluginMetricPrefix starts the name of every metric a plugin reports on
// the server's /metrics. Plugins report what kube-controller-manager
// would (workqueue_*, rest_client_*, go_*, process_*); kube-apiserver
// reports the same names for itself, and one registry cannot hold a
// family twice with different labels, so the plugins' are renamed.
const pluginMetricPrefix = "keelson_plugin_"

// pluginLabel is added to every plugin metric: the plugin's name.
const pluginMetricLabel = "plugin"

var (
	pluginMetricsOnce sync.Once
	pluginMetricsRead atomic.Pointer[func(context.Context) []host.PluginMetrics]
)

// servePluginMetrics puts the plugins' metrics on kube-apiserver's
// /metrics (its process-global registry): registered once per process,
// reading from the latest plugin host.
func servePluginMetrics(read func(context.Context) []host.PluginMetrics, log *slog.Logger) {
	pluginMetricsRead.Store(&read)
	pluginMetricsOnce.Do(func() {
		c := &pluginMetrics{log: log, read: func(ctx context.Context) []host.PluginMetrics {
			if f := pluginMetricsRead.Load(); f != nil {
				return (*f)(ctx)
			}
			return nil
		}}
		if err := legacyregistry.Registerer().Register(c); err != nil {
			log.Warn("plugin metrics not served", "err", err)
		}
	})
}

// pluginMetrics is an unchecked Prometheus collector that, at each scrape
// of the server's /metrics, reads the running plugins' metrics through the
// plugin host and re-emits them renamed and labelled with their plugin.
// Only the leader runs plugins; a follower's /metrics has none.
type pluginMetrics struct {
	read func(ctx context.Context) []host.PluginMetrics
	log  *slog.Logger
}

// Describe sends nothing: the families are only known when read.
func (c *pluginMetrics) Describe(chan<- *prometheus.Desc) {}

func (c *pluginMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, pm := range c.read(context.Background()) {
		if pm.Err != nil {
			c.log.Debug("reading a plugin's metrics", "plugin", pm.Name, "err", pm.Err)
			continue
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(pm.Text))
		if err != nil {
			c.log.Warn("a plugin's metrics do not parse; left out", "plugin", pm.Name, "err", err)
			continue
		}
		for _, mf := range families {
			desc := prometheus.NewDesc(pluginMetricPrefix+mf.GetName(), mf.GetHelp(), nil, nil)
			for _, m := range mf.GetMetric() {
				ch <- &relabelled{desc: desc, m: withPluginLabel(m, pm.Name)}
			}
		}
	}
}

// withPluginLabel adds plugin=<name> to a metric's labels (kept sorted); a
// label of that name the plugin set itself becomes exported_plugin, as
// Prometheus renames clashing target labels.
func withPluginLabel(m *dto.Metric, name string) *dto.Metric {
	out := proto.Clone(m).(*dto.Metric)
	for _, lp := range out.Label {
		if lp.GetName() == pluginMetricLabel {
			lp.Name = proto.String("exported_" + pluginMetricLabel)
		}
	}
	out.Label = append(out.Label, &dto.LabelPair{Name: proto.String(pluginMetricLabel), Value: proto.String(name)})
	slices.SortFunc(out.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// relabelled is one plugin metric as read, under its new name.
type relabelled struct {
	desc *prometheus.Desc
	m    *dto.Metric
}

func (r *relabelled) Desc() *prometheus.Desc { return r.desc }

func (r *relabelled) Write(out *dto.Metric) error {
	proto.Reset(out)
	proto.Merge(out, r.m)
	return nil
}
