package ingress

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The reasons of ingress_upstream_errors_total.
const (
	// reasonConnect: connecting to an endpoint failed.
	reasonConnect = "connect"
	// reasonRetry: the request was sent to the next endpoint after a
	// failed connect (idempotent requests only).
	reasonRetry = "retry"
	// reasonNoEndpoints: the backend had no ready endpoint (a 503).
	reasonNoEndpoints = "no_endpoints"
	// reasonResponse: the endpoint failed after the connection was made
	// (reset, malformed or missing response; a 502).
	reasonResponse = "response"
)

// routeLabels label every per-route series: the Ingress rule, never the
// request's own path or host, so the series are bounded by the rules.
var routeLabels = []string{"namespace", "ingress", "host", "path", "service"}

// Metrics are the data plane's per-route Prometheus metrics. The node part
// registers them with sdk.MetricsRegisterer(), so the node's agent serves
// them as keelson_plugin_ingress_*{plugin="ingress"}.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	upstream  *prometheus.CounterVec
	unmatched prometheus.Counter

	mu    sync.Mutex
	bound map[[5]string]bool // the label values of the served routes
}

// NewMetrics creates the metrics and registers them with reg (when a
// collector is already registered there, it is reused).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingress_requests_total",
			Help: "Requests routed by an Ingress rule, by the rule and the status code class of the answer (1xx-5xx; none when the client went away first).",
		}, append(routeLabels, "code")),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ingress_request_duration_seconds",
			Help:    "Time from routing a request by an Ingress rule to the end of its answer (for an upgraded connection, its whole life).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, routeLabels),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ingress_upstream_errors_total",
			Help: "Failures reaching an Ingress rule's backend, by reason: connect (a connection to an endpoint failed), retry (sent again to the next endpoint), no_endpoints, response (the endpoint failed after connecting).",
		}, append(routeLabels, "reason")),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ingress_unmatched_requests_total",
			Help: "Requests no Ingress rule matched, with no default backend (answered 404).",
		}),
		bound: map[[5]string]bool{},
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.upstream, err = register(reg, m.upstream); err != nil {
		return nil, err
	}
	if m.unmatched, err = register(reg, m.unmatched); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// bind gives each route of t its series and drops the series of routes
// that t no longer has (an Ingress or rule removed), so the series follow
// the rules. t must not serve yet.
func (m *Metrics) bind(t *Table) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := make(map[[5]string]bool, len(t.routes))
	for _, r := range t.routes {
		key := [5]string{r.Namespace, r.Ingress, r.Host, r.Path, r.service}
		now[key] = true
		labels := prometheus.Labels{"namespace": key[0], "ingress": key[1], "host": key[2], "path": key[3], "service": key[4]}
		r.obs = &routeObservers{
			requests: m.requests.MustCurryWith(labels),
			duration: m.duration.With(labels),
			upstream: m.upstream.MustCurryWith(labels),
		}
	}
	for key := range m.bound {
		if !now[key] {
			labels := prometheus.Labels{"namespace": key[0], "ingress": key[1], "host": key[2], "path": key[3], "service": key[4]}
			m.requests.DeletePartialMatch(labels)
			m.duration.Delete(labels)
			m.upstream.DeletePartialMatch(labels)
		}
	}
	m.bound = now
}

func (m *Metrics) unmatchedRequest() {
	if m != nil {
		m.unmatched.Inc()
	}
}

// routeObservers are one route's series; a nil one observes nothing.
type routeObservers struct {
	requests *prometheus.CounterVec // curried: code
	duration prometheus.Observer
	upstream *prometheus.CounterVec // curried: reason
}

// done counts a request answered through rec, routed at start.
func (o *routeObservers) done(rec *statusRecorder, start time.Time) {
	if o == nil {
		return
	}
	o.requests.WithLabelValues(codeClass(rec.code)).Inc()
	o.duration.Observe(time.Since(start).Seconds())
}

func (o *routeObservers) upstreamError(reason string) {
	if o != nil {
		o.upstream.WithLabelValues(reason).Inc()
	}
}

var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// codeClass is 2xx for 200-299 and so on; none when no answer was written.
func codeClass(code int) string {
	if code < 100 || code > 599 {
		return "none"
	}
	return codeClasses[code/100-1]
}

// statusRecorder remembers the status code of the answer; the wrapped
// writer stays reachable (Unwrap) for flushing, and hijacking an upgraded
// connection records 101.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	// 1xx informational answers (103, 100) precede the final one.
	if s.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack takes over the connection of an upgrade (WebSocket), whose answer
// is 101 Switching Protocols.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && s.code == 0 {
		s.code = http.StatusSwitchingProtocols
	}
	return c, rw, err
}
