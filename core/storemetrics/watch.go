package storemetrics

import "github.com/prometheus/client_golang/prometheus"

// WatchQueue is what the etcd API's watch streams hold in memory and the
// caps that bound it.
type WatchQueue struct {
	// Events and Bytes are queued on every stream and not yet written.
	Events, Bytes int64
	// Stalled watches are at their cap, waiting for their client to read.
	Stalled int64
	// Compacted counts watches canceled with etcd's compacted error.
	Compacted int64
	// WatchEvents and WatchBytes cap one watch's queue, StreamBytes one
	// stream's.
	WatchEvents, WatchBytes, StreamBytes int64
}

// History is the retained event history's accounted size and its cap
// (0: none).
type History struct{ Bytes, Limit int64 }

var (
	queuedEventsDesc = prometheus.NewDesc("keelson_store_watch_queued_events", "Watch events queued for clients and not yet written to their streams.", nil, nil)
	queuedBytesDesc  = prometheus.NewDesc("keelson_store_watch_queued_bytes", "Estimated bytes of the watch events queued for clients.", nil, nil)
	stalledDesc      = prometheus.NewDesc("keelson_store_watch_stalled", "Watches at their queue cap, waiting for their client to read; each is canceled as compacted once compaction passes it.", nil, nil)
	compactedDesc    = prometheus.NewDesc("keelson_store_watch_compacted_total", "Watches canceled with etcd's compacted error because history they needed was compacted (started, or fell, behind the retained window).", nil, nil)
	limitEventsDesc  = prometheus.NewDesc("keelson_store_watch_queue_limit_events", "Cap on the events one watch may have queued.", nil, nil)
	limitBytesDesc   = prometheus.NewDesc("keelson_store_watch_queue_limit_bytes", "Cap on the bytes one watch (scope=watch) or one stream of watches (scope=stream) may have queued.", []string{"scope"}, nil)
	historyDesc      = prometheus.NewDesc("keelson_store_history_bytes", "Accounted size of the retained event history (keys, values and overhead of every retained event).", nil, nil)
	historyLimitDesc = prometheus.NewDesc("keelson_store_history_limit_bytes", "Size past which the leader compacts the oldest history (0: no size bound).", nil, nil)
)

var watchDescs = []*prometheus.Desc{queuedEventsDesc, queuedBytesDesc, stalledDesc, compactedDesc, limitEventsDesc, limitBytesDesc, historyDesc, historyLimitDesc}

func collectWatchQueue(ch chan<- prometheus.Metric, q WatchQueue) {
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(queuedEventsDesc, q.Events)
	gauge(queuedBytesDesc, q.Bytes)
	gauge(stalledDesc, q.Stalled)
	ch <- prometheus.MustNewConstMetric(compactedDesc, prometheus.CounterValue, float64(q.Compacted))
	gauge(limitEventsDesc, q.WatchEvents)
	gauge(limitBytesDesc, q.WatchBytes, "watch")
	gauge(limitBytesDesc, q.StreamBytes, "stream")
}

func collectHistory(ch chan<- prometheus.Metric, h History) {
	ch <- prometheus.MustNewConstMetric(historyDesc, prometheus.GaugeValue, float64(h.Bytes))
	ch <- prometheus.MustNewConstMetric(historyLimitDesc, prometheus.GaugeValue, float64(h.Limit))
}
