package host

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// MetricPrefix starts the name of every plugin metric a host reports on
// its process's /metrics. Plugins report what kube-controller-manager
// would (workqueue_*, rest_client_*, go_*, process_*); kube-apiserver and
// the agent report the same names for themselves, and one registry cannot
// hold a family twice with different labels, so the plugins' are renamed.
const MetricPrefix = "keelson_plugin_"

// MetricLabel is added to every plugin metric: the plugin's name.
const MetricLabel = "plugin"

// NewMetricsCollector returns an unchecked Prometheus collector that, at
// each scrape, reads the running plugins' metrics with read (a
// Supervisor's Metrics) and re-emits them renamed with MetricPrefix and
// labelled with their plugin. The leader's server and every agent (for its
// node plugins) register one.
func NewMetricsCollector(read func(context.Context) []PluginMetrics, log *slog.Logger) prometheus.Collector {
	return &metricsCollector{read: read, log: log}
}

type metricsCollector struct {
	read func(ctx context.Context) []PluginMetrics
	log  *slog.Logger
}

// Describe sends nothing: the families are only known when read.
func (c *metricsCollector) Describe(chan<- *prometheus.Desc) {}

func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
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
			desc := prometheus.NewDesc(MetricPrefix+mf.GetName(), mf.GetHelp(), nil, nil)
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
		if lp.GetName() == MetricLabel {
			lp.Name = proto.String("exported_" + MetricLabel)
		}
	}
	out.Label = append(out.Label, &dto.LabelPair{Name: proto.String(MetricLabel), Value: proto.String(name)})
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
