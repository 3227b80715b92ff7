package kubeletapi

import (
	"context"
	"time"

	"github.com/keelson/keelson/agent/stats"
	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds one read of the node's usage for a metrics scrape.
const scrapeTimeout = 10 * time.Second

// UsageReader reads the node's and its containers' usage.
type UsageReader interface {
	Usage(ctx context.Context) (stats.Snapshot, error)
}

// The /metrics/resource families, named, labelled and described as
// kubelet's (with their stability level in the help text, as
// component-base writes it). Every sample carries the time it was read,
// which metrics-server uses to compute rates.
var (
	nodeCPUDesc = prometheus.NewDesc("node_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemDesc = prometheus.NewDesc("node_memory_working_set_bytes",
		"[STABLE] Current working set of the node in bytes", nil, nil)
	podCPUDesc = prometheus.NewDesc("pod_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the pod in core-seconds", []string{"pod", "namespace"}, nil)
	podMemDesc = prometheus.NewDesc("pod_memory_working_set_bytes",
		"[STABLE] Current working set of the pod in bytes", []string{"pod", "namespace"}, nil)
	containerCPUDesc = prometheus.NewDesc("container_cpu_usage_seconds_total",
		"[STABLE] Cumulative cpu time consumed by the container in core-seconds", []string{"container", "pod", "namespace"}, nil)
	containerMemDesc = prometheus.NewDesc("container_memory_working_set_bytes",
		"[STABLE] Current working set of the container in bytes", []string{"container", "pod", "namespace"}, nil)
	containerStartDesc = prometheus.NewDesc("container_start_time_seconds",
		"[STABLE] Start time of the container since unix epoch in seconds", []string{"container", "pod", "namespace"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("scrape_error",
		"[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
	resourceScrapeErrorDesc = prometheus.NewDesc("resource_scrape_error",
		"[STABLE] 1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

// resourceCollector serves kubelet's /metrics/resource from one usage read
// per scrape.
type resourceCollector struct{ usage UsageReader }

func (c resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeCPUDesc, nodeMemDesc, podCPUDesc, podMemDesc,
		containerCPUDesc, containerMemDesc, containerStartDesc, scrapeErrorDesc, resourceScrapeErrorDesc} {
		ch <- d
	}
}

func (c resourceCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	snap, err := c.usage.Usage(ctx)
	failed := 0.0
	if err != nil {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(resourceScrapeErrorDesc, prometheus.GaugeValue, failed)
	if err != nil {
		return
	}
	n := snap.Node
	ch <- timed(n.Time, nodeCPUDesc, prometheus.CounterValue, seconds(n.CPUNanos))
	ch <- timed(n.Time, nodeMemDesc, prometheus.GaugeValue, float64(n.WorkingSet))
	for _, p := range snap.Pods {
		if len(p.Containers) == 0 {
			continue
		}
		ch <- timed(p.Usage.Time, podCPUDesc, prometheus.CounterValue, seconds(p.Usage.CPUNanos), p.Name, p.Namespace)
		ch <- timed(p.Usage.Time, podMemDesc, prometheus.GaugeValue, float64(p.Usage.WorkingSet), p.Name, p.Namespace)
		for _, ct := range p.Containers {
			u := ct.Usage
			ch <- timed(u.Time, containerCPUDesc, prometheus.CounterValue, seconds(u.CPUNanos), ct.Name, p.Name, p.Namespace)
			ch <- timed(u.Time, containerMemDesc, prometheus.GaugeValue, float64(u.WorkingSet), ct.Name, p.Name, p.Namespace)
			ch <- timed(ct.StartedAt, containerStartDesc, prometheus.GaugeValue, unixSeconds(ct.StartedAt), ct.Name, p.Name, p.Namespace)
		}
	}
}

// The /metrics/cadvisor families the agent measures, with cadvisor's
// names and the labels kubelet's cadvisor endpoint gives them: id is the
// cgroup path, name the runtime's container ID; the node is the root
// cgroup "/" with the other labels empty.
var cadvisorLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

var (
	cadvisorCPUDesc = prometheus.NewDesc("container_cpu_usage_seconds_total",
		"Cumulative cpu time consumed in seconds.", append([]string{"cpu"}, cadvisorLabels...), nil)
	cadvisorMemUsageDesc = prometheus.NewDesc("container_memory_usage_bytes",
		"Current memory usage in bytes, including all memory regardless of when it was accessed", cadvisorLabels, nil)
	cadvisorWorkingSetDesc = prometheus.NewDesc("container_memory_working_set_bytes",
		"Current working set in bytes.", cadvisorLabels, nil)
	cadvisorRSSDesc = prometheus.NewDesc("container_memory_rss",
		"Size of RSS in bytes.", cadvisorLabels, nil)
	cadvisorFailcntDesc = prometheus.NewDesc("container_memory_failcnt",
		"Number of memory usage hits limits", cadvisorLabels, nil)
	cadvisorLimitDesc = prometheus.NewDesc("container_spec_memory_limit_bytes",
		"Memory limit for the container.", cadvisorLabels, nil)
	cadvisorStartDesc = prometheus.NewDesc("container_start_time_seconds",
		"Start time of the container since unix epoch in seconds.", cadvisorLabels, nil)
	cadvisorLastSeenDesc = prometheus.NewDesc("container_last_seen",
		"Last time a container was seen by the exporter", cadvisorLabels, nil)
)

// cadvisorCollector serves the cadvisor-compatible container metrics.
type cadvisorCollector struct {
	usage UsageReader
	// errors counts failed reads, as a scrape of cadvisor shows nothing
	// else when it cannot read.
	errors prometheus.Counter
}

func (c cadvisorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cadvisorCPUDesc, cadvisorMemUsageDesc, cadvisorWorkingSetDesc, cadvisorRSSDesc,
		cadvisorFailcntDesc, cadvisorLimitDesc, cadvisorStartDesc, cadvisorLastSeenDesc} {
		ch <- d
	}
	c.errors.Describe(ch)
}

func (c cadvisorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	snap, err := c.usage.Usage(ctx)
	if err != nil {
		c.errors.Inc()
	}
	c.errors.Collect(ch)
	if err != nil {
		return
	}
	c.cgroup(ch, snap.Node, time.Time{}, "", "/", "", "", "", "")
	for _, p := range snap.Pods {
		for _, ct := range p.Containers {
			c.cgroup(ch, ct.Usage, ct.StartedAt, ct.Name, "/"+trimSlash(ct.Cgroup), ct.Image, ct.ID, p.Namespace, p.Name)
		}
	}
}

// cgroup writes one cgroup's samples; labels follow cadvisorLabels.
func (c cadvisorCollector) cgroup(ch chan<- prometheus.Metric, u stats.Usage, started time.Time, labels ...string) {
	ch <- timed(u.Time, cadvisorCPUDesc, prometheus.CounterValue, seconds(u.CPUNanos), append([]string{"total"}, labels...)...)
	ch <- timed(u.Time, cadvisorMemUsageDesc, prometheus.GaugeValue, float64(u.MemoryUsage), labels...)
	ch <- timed(u.Time, cadvisorWorkingSetDesc, prometheus.GaugeValue, float64(u.WorkingSet), labels...)
	ch <- timed(u.Time, cadvisorRSSDesc, prometheus.GaugeValue, float64(u.RSS), labels...)
	ch <- timed(u.Time, cadvisorFailcntDesc, prometheus.CounterValue, float64(u.MemoryFailcnt), labels...)
	ch <- timed(u.Time, cadvisorLimitDesc, prometheus.GaugeValue, float64(u.MemoryLimit), labels...)
	if !started.IsZero() {
		ch <- timed(u.Time, cadvisorStartDesc, prometheus.GaugeValue, unixSeconds(started), labels...)
	}
	ch <- timed(u.Time, cadvisorLastSeenDesc, prometheus.GaugeValue, unixSeconds(u.Time), labels...)
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// timed is a sample stamped with the time it was read.
func timed(t time.Time, d *prometheus.Desc, vt prometheus.ValueType, v float64, labels ...string) prometheus.Metric {
	return prometheus.NewMetricWithTimestamp(t, prometheus.MustNewConstMetric(d, vt, v, labels...))
}

func seconds(nanos uint64) float64 { return float64(nanos) / 1e9 }

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// newResourceRegistry and newCadvisorRegistry are the registries of
// /metrics/resource and /metrics/cadvisor: each holds only its families,
// as kubelet's endpoints do.
func newResourceRegistry(u UsageReader) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(resourceCollector{usage: u})
	return r
}

func newCadvisorRegistry(u UsageReader) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(cadvisorCollector{usage: u, errors: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "keelson_agent_cadvisor_read_errors_total",
		Help: "Reads of the containers' usage for /metrics/cadvisor that failed.",
	})})
	return r
}
