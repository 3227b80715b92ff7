package kubeletapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/stats"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

// usageBackend serves a fixed usage read; the other Backend methods are
// not reached by the metrics endpoints.
type usageBackend struct {
	Backend
	snap stats.Snapshot
	err  error
}

func (b usageBackend) Usage(context.Context) (stats.Snapshot, error) { return b.snap, b.err }

var (
	readAt  = time.Unix(1700000000, 500_000_000)
	started = time.Unix(1699999000, 0)
)

func busyNode() stats.Snapshot {
	c := stats.ContainerUsage{Name: "loop", ID: "abc123", Image: "busybox:1.36", Cgroup: "/keelson/pod-u1/abc123", StartedAt: started,
		Usage: stats.Usage{Time: readAt, CPUNanos: 2_500_000_000, MemoryUsage: 4096, WorkingSet: 2048, RSS: 1024, MemoryLimit: 1 << 20}}
	p := stats.PodUsage{Namespace: "default", Name: "busy", UID: "u1", StartTime: started}
	p.Add(c)
	return stats.Snapshot{
		Node: stats.Usage{Time: readAt, CPUNanos: 10_000_000_000, WorkingSet: 1 << 30, MemoryLimit: 1 << 32},
		Pods: []stats.PodUsage{p, {Namespace: "default", Name: "pending", UID: "u2"}},
	}
}

// metricsServer is a kubelet API whose access reviews allow user "admin"
// and record the subresource asked.
func metricsServer(t *testing.T, b Backend) (*Server, *[]string) {
	t.Helper()
	rv := newReviewer()
	var asked []string
	rv.client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		asked = append(asked, sar.Spec.ResourceAttributes.Resource+"/"+sar.Spec.ResourceAttributes.Subresource)
		sar.Status.Allowed = sar.Spec.User == "admin"
		return true, sar, nil
	})
	rv.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token != "other" {
			return false, nil, nil
		}
		tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "viewer"}}
		return true, tr, nil
	})
	pm := prometheus.NewRegistry()
	s, err := Listen(Options{Address: "127.0.0.1:0", NodeName: "n1", Client: rv.client, Backend: b, Probes: pm,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clockwork.NewFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.l.Close() })
	return s, &asked
}

func get(s *Server, path, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", "https://node"+path, nil)
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, r)
	return w
}

func TestResourceMetrics(t *testing.T) {
	s, asked := metricsServer(t, usageBackend{snap: busyNode()})
	w := get(s, "/metrics/resource", "good")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	body := w.Body.String()
	for _, want := range []string{
		"node_cpu_usage_seconds_total 10 1700000000500",
		"node_memory_working_set_bytes 1.073741824e+09 1700000000500",
		`pod_cpu_usage_seconds_total{namespace="default",pod="busy"} 2.5 1700000000500`,
		`pod_memory_working_set_bytes{namespace="default",pod="busy"} 2048 1700000000500`,
		`container_cpu_usage_seconds_total{container="loop",namespace="default",pod="busy"} 2.5 1700000000500`,
		`container_memory_working_set_bytes{container="loop",namespace="default",pod="busy"} 2048 1700000000500`,
		`container_start_time_seconds{container="loop",namespace="default",pod="busy"} 1.699999e+09 1699999000000`,
		"# TYPE container_cpu_usage_seconds_total counter",
		"resource_scrape_error 0",
		"scrape_error 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics/resource lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, `pod="pending"`) {
		t.Errorf("a pod with no running container is reported:\n%s", body)
	}
	if len(*asked) != 1 || (*asked)[0] != "nodes/metrics" {
		t.Errorf("access reviews %v, want one for nodes/metrics", *asked)
	}
	if problems, err := testutil.GatherAndLint(newResourceRegistry(usageBackend{snap: busyNode()})); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestResourceMetricsReadError(t *testing.T) {
	s, _ := metricsServer(t, usageBackend{err: errors.New("no /proc")})
	w := get(s, "/metrics/resource", "good")
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "resource_scrape_error 1") || strings.Contains(body, "node_cpu_usage_seconds_total ") {
		t.Errorf("status %d, body:\n%s", w.Code, body)
	}
}

func TestMetricsEndpointsNeedNodesMetrics(t *testing.T) {
	s, asked := metricsServer(t, usageBackend{snap: busyNode()})
	for _, path := range []string{"/metrics/resource", "/metrics/cadvisor", "/metrics/probes"} {
		if w := get(s, path, "good"); w.Code != http.StatusOK {
			t.Errorf("%s as admin: %d %s", path, w.Code, w.Body)
		}
	}
	w := get(s, "/metrics/resource", "other")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "subresource=metrics") {
		t.Errorf("as a user without nodes/metrics: %d %s", w.Code, w.Body)
	}
	for _, a := range *asked {
		if a != "nodes/metrics" {
			t.Errorf("access review for %s, want nodes/metrics", a)
		}
	}
}

func TestCadvisorMetrics(t *testing.T) {
	s, _ := metricsServer(t, usageBackend{snap: busyNode()})
	body := get(s, "/metrics/cadvisor", "good").Body.String()
	labels := `container="loop",id="/keelson/pod-u1/abc123",image="busybox:1.36",name="abc123",namespace="default",pod="busy"`
	for _, want := range []string{
		`container_cpu_usage_seconds_total{` + labels[:len(`container="loop",`)] + `cpu="total",` + labels[len(`container="loop",`):] + `} 2.5 1700000000500`,
		`container_memory_working_set_bytes{` + labels + `} 2048 1700000000500`,
		`container_memory_usage_bytes{` + labels + `} 4096 1700000000500`,
		`container_memory_rss{` + labels + `} 1024 1700000000500`,
		`container_spec_memory_limit_bytes{` + labels + `} 1.048576e+06 1700000000500`,
		`container_cpu_usage_seconds_total{container="",cpu="total",id="/",image="",name="",namespace="",pod=""} 10 1700000000500`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics/cadvisor lacks %q:\n%s", want, body)
		}
	}
}

// BenchmarkResourceMetrics renders /metrics/resource for a node with 100
// pods (the cgroup reads are not included: the usage is given).
func BenchmarkResourceMetrics(b *testing.B) {
	snap := stats.Snapshot{Node: stats.Usage{Time: readAt, CPUNanos: 1, WorkingSet: 1}}
	for i := range 100 {
		p := stats.PodUsage{Namespace: "default", Name: "pod-" + strconv.Itoa(i), UID: strconv.Itoa(i)}
		p.Add(stats.ContainerUsage{Name: "app", ID: strconv.Itoa(i), StartedAt: started, Usage: stats.Usage{Time: readAt, CPUNanos: 5, WorkingSet: 7}})
		snap.Pods = append(snap.Pods, p)
	}
	h := promhttp.HandlerFor(newResourceRegistry(usageBackend{snap: snap}), promhttp.HandlerOpts{})
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/metrics/resource", nil))
	}
}
