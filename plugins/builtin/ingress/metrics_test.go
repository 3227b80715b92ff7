package ingress

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestProxyMetricsPerRoute sends requests through the data plane and reads
// its registry: each series is an Ingress rule (not the request's path),
// the answer's code class, the upstream failures by reason, and the series
// of a rule go when the rule does.
func TestProxyMetricsPerRoute(t *testing.T) {
	ok := httptest.NewServer(echo("ok"))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	defer failing.Close()
	dead := deadAddrs(t, 2)
	eps := map[string][]string{"web": {addr(ok)}, "bad": {addr(failing)}, "down": dead}
	fanout := ing("shop", 0, rule("example.com",
		path{"/foo", prefix, "web"}, path{"/err", exact, "bad"}, path{"/down", prefix, "down"}, path{"/empty", prefix, "none"}))

	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(slog.New(slog.DiscardHandler), false, m)
	p.Set(Build(endpointsWorld(eps, nil, fanout)))
	front := httptest.NewServer(p)
	for _, c := range []struct {
		path string
		code int
	}{
		{"/foo", 200}, {"/foo/a/b", 200}, {"/foo/c?x=1", 200}, {"/err", 500},
		{"/down/x", http.StatusBadGateway}, {"/empty", http.StatusServiceUnavailable},
	} {
		if code, body := get(t, front.Client(), front.URL+c.path, "example.com"); code != c.code {
			t.Errorf("GET %s: %d %q, want %d", c.path, code, body, c.code)
		}
	}
	if code, _ := get(t, front.Client(), front.URL+"/foo", "unknown.example"); code != 404 {
		t.Errorf("an unknown host: %d, want 404", code)
	}
	front.Close() // waits for the handlers, which count as they return

	want := `# HELP ingress_requests_total Requests routed by an Ingress rule, by the rule and the status code class of the answer (1xx-5xx; none when the client went away first).
# TYPE ingress_requests_total counter
ingress_requests_total{code="2xx",host="example.com",ingress="shop",namespace="default",path="/foo",service="web:80"} 3
ingress_requests_total{code="5xx",host="example.com",ingress="shop",namespace="default",path="/down",service="down:80"} 1
ingress_requests_total{code="5xx",host="example.com",ingress="shop",namespace="default",path="/empty",service="none:80"} 1
ingress_requests_total{code="5xx",host="example.com",ingress="shop",namespace="default",path="/err",service="bad:80"} 1
# HELP ingress_unmatched_requests_total Requests no Ingress rule matched, with no default backend (answered 404).
# TYPE ingress_unmatched_requests_total counter
ingress_unmatched_requests_total 1
# HELP ingress_upstream_errors_total Failures reaching an Ingress rule's backend, by reason: connect (a connection to an endpoint failed), retry (sent again to the next endpoint), no_endpoints, response (the endpoint failed after connecting).
# TYPE ingress_upstream_errors_total counter
ingress_upstream_errors_total{host="example.com",ingress="shop",namespace="default",path="/down",reason="connect",service="down:80"} 2
ingress_upstream_errors_total{host="example.com",ingress="shop",namespace="default",path="/down",reason="retry",service="down:80"} 1
ingress_upstream_errors_total{host="example.com",ingress="shop",namespace="default",path="/empty",reason="no_endpoints",service="none:80"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"ingress_requests_total", "ingress_upstream_errors_total", "ingress_unmatched_requests_total"); err != nil {
		t.Error(err)
	}
	if n := histogramCount(t, reg, "/foo"); n != 3 {
		t.Errorf("ingress_request_duration_seconds of /foo counts %d requests, want 3", n)
	}

	// The rule /err removed: its series go, the others stay.
	p.Set(Build(endpointsWorld(eps, nil, ing("shop", 0, rule("example.com", path{"/foo", prefix, "web"})))))
	if got := testutil.CollectAndCount(m.requests); got != 1 {
		t.Errorf("after removing rules, %d ingress_requests_total series, want 1 (/foo)", got)
	}
	if got := testutil.CollectAndCount(m.duration); got != 1 {
		t.Errorf("after removing rules, %d ingress_request_duration_seconds series, want 1 (/foo)", got)
	}
}

// deadAddrs are n loopback addresses nothing listens on.
func deadAddrs(t *testing.T, n int) []string {
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l.Addr().String())
		l.Close()
	}
	return out
}

func histogramCount(t *testing.T, reg *prometheus.Registry, path string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ingress_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "path" && lp.GetValue() == path {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestCodeClass(t *testing.T) {
	for code, want := range map[int]string{0: "none", 101: "1xx", 200: "2xx", 308: "3xx", 404: "4xx", 503: "5xx", 600: "none"} {
		if got := codeClass(code); got != want {
			t.Errorf("codeClass(%d) = %q, want %q", code, got, want)
		}
	}
}
