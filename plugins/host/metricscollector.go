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

// Collect re-emits every plugin's families. Plugins built with other
// client versions may describe one family differently (help text, type);
// a registry refuses a scrape whose family is inconsistent, so the first
// plugin's (by name) description of a family is used for all, and a plugin's
// family of another type is left out rather than failing the scrape.
func (c *metricsCollector) Collect(ch chan<- prometheus.Metric) {
	type family struct {
		desc *prometheus.Desc
		typ  dto.MetricType
	}
	seen := map[string]family{}
	read := c.read(context.Background())
	// In name order, so the same plugin's description wins every scrape.
	slices.SortFunc(read, func(a, b PluginMetrics) int { return strings.Compare(a.Name, b.Name) })
	for _, pm := range read {
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
			name := MetricPrefix + mf.GetName()
			f, ok := seen[name]
			if !ok {
				f = family{desc: prometheus.NewDesc(name, mf.GetHelp(), nil, nil), typ: mf.GetType()}
				seen[name] = f
			} else if f.typ != mf.GetType() {
				c.log.Debug("a plugin's metric has another type than another plugin's of the same name; left out",
					"plugin", pm.Name, "metric", name, "type", mf.GetType(), "first", f.typ)
				continue
			}
			for _, m := range mf.GetMetric() {
				ch <- &relabelled{desc: f.desc, m: withPluginLabel(m, pm.Name)}
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
