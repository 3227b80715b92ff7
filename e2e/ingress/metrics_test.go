package ingress

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keelson/keelson/e2e/harness"
)

// testRouteMetrics sends requests to one route of the fanout Ingress and
// reads the nodes' /metrics through the API server's node proxy (the way
// Prometheus scrapes kubelets): the data plane's per-route counter, relayed
// by the agent as keelson_plugin_ingress_requests_total{plugin="ingress"},
// moves by as many requests.
func testRouteMetrics(t *testing.T, c *cluster) {
	route := map[string]string{"namespace": "default", "ingress": "fanout", "host": "fanout.example",
		"path": "/bar", "service": "bar:http", "code": "2xx", "plugin": "ingress"}
	// The route is served before counting starts.
	c.expect(t, "http", "fanout.example", "/bar", 200, "bar-")
	before := c.routeRequests(t, route)
	const n = 5
	for range n {
		c.expect(t, "http", "fanout.example", "/bar/x", 200, "bar-")
	}
	var after float64
	harness.Eventually(t, deadline, fmt.Sprintf("the route's counter moves from %v by %d", before, n), func() (bool, string) {
		after = c.routeRequests(t, route)
		return after >= before+n, fmt.Sprint(after)
	})
	t.Logf("keelson_plugin_ingress_requests_total of fanout.example/bar on the nodes: %v, then %v after %d requests", before, after, n)
}

// routeRequests sums, over the agents' /metrics, the series of
// keelson_plugin_ingress_requests_total with labels.
func (c *cluster) routeRequests(t *testing.T, labels map[string]string) float64 {
	t.Helper()
	var sum float64
	for _, node := range []string{"a1", "a2"} {
		raw, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/api/v1/nodes", node, "proxy", "metrics").DoRaw(context.Background())
		if err != nil {
			t.Fatalf("scraping node %s's /metrics: %v", node, err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("node %s's /metrics does not parse: %v", node, err)
		}
		mf := families["keelson_plugin_ingress_requests_total"]
		if mf == nil {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}
