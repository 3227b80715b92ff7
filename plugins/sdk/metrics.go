package sdk

import (
	"bytes"
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"k8s.io/component-base/metrics/legacyregistry"

	// client-go's request and workqueue metrics, with kube-controller-manager's
	// names (rest_client_*, workqueue_*), into legacyregistry.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
)

// MetricsRegisterer is where a plugin registers its own Prometheus
// collectors: the process's legacyregistry, which also holds client-go's
// request and workqueue metrics and the Go runtime and process metrics.
// The host reads them all when its /metrics is scraped (the README's
// "Plugin metrics").
func MetricsRegisterer() prometheus.Registerer { return legacyregistry.Registerer() }

// Metrics gathers the process's metrics in the Prometheus text format, for
// the host.
func (s *server) Metrics(context.Context) ([]byte, error) { return gatherMetrics(s.p.Name) }

func gatherMetrics(name string) ([]byte, error) {
	mfs, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil && len(mfs) == 0 {
		return nil, fmt.Errorf("plugin %s: gathering metrics: %w", name, err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("plugin %s: encoding metric %s: %w", name, mf.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}
