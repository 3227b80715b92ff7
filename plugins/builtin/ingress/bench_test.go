package ingress

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1 "k8s.io/api/networking/v1"
)

// BenchmarkProxy sends small GETs over HTTP/1.1 keep-alive connections to
// a backend directly and through the data plane, at 1 and 64 concurrent
// connections, on loopback. It reports requests/s and the p50 and p99
// latency; the data plane's added latency is the difference between the
// proxied and the direct figures.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	m, err := NewMetrics(prometheus.NewRegistry()) // as the node part runs it
	if err != nil {
		b.Fatal(err)
	}
	p := NewProxy(slog.New(slog.DiscardHandler), false, m)
	p.Set(Build(endpointsWorld(map[string][]string{"b": {addr(backend)}}, nil,
		ing("i", 0, rule("bench.example", path{"/", prefix, "b"})))))
	front := httptest.NewServer(p)
	defer front.Close()
	for _, conns := range []int{1, 64} {
		for _, target := range []struct{ name, url string }{{"direct", backend.URL}, {"proxied", front.URL}} {
			b.Run(fmt.Sprintf("%s/conns=%d", target.name, conns), func(b *testing.B) {
				load(b, target.url+"/x", conns)
			})
		}
	}
}

func load(b *testing.B, url string, conns int) {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	lat := make([][]time.Duration, conns)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += conns {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Host = "bench.example"
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkBuild1000 is the data plane's share of an Ingress change with
// 1,000 Ingresses present: building the whole table again.
func BenchmarkBuild1000(b *testing.B) {
	var ings []*networkingv1.Ingress
	for i := range 1000 {
		ings = append(ings, ing(fmt.Sprint("i", i), i, rule(fmt.Sprintf("h%d.example", i),
			path{"/a", prefix, fmt.Sprint("s", i)}, path{"/b", exact, fmt.Sprint("t", i)})))
	}
	w := world(ings...)
	b.ResetTimer()
	for b.Loop() {
		Build(w)
	}
}

// BenchmarkProxyAllocs sends one small GET at a time over a keep-alive
// connection, directly to a backend and through the data plane, all in
// this process: with -benchmem, the proxied figures less the direct ones
// are the allocations the data plane makes per proxied request (its
// server side, routing, the reverse proxy and its transport).
func BenchmarkProxyAllocs(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer backend.Close()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	p := NewProxy(slog.New(slog.DiscardHandler), false, m)
	p.Set(Build(endpointsWorld(map[string][]string{"b": {addr(backend)}}, nil,
		ing("i", 0, rule("bench.example", path{"/", prefix, "b"})))))
	front := httptest.NewUnstartedServer(p)
	front.Config.ConnContext = connContext // as the node part serves
	front.Start()
	defer front.Close()
	for _, target := range []struct{ name, url string }{{"direct", backend.URL}, {"proxied", front.URL}} {
		b.Run(target.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			req, _ := http.NewRequest(http.MethodGet, target.url+"/x", nil)
			req.Host = "bench.example"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, resp.Body); err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
