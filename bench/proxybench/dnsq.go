package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	keelsondns "github.com/keelson/keelson/agent/dns"
	"github.com/keelson/keelson/bench/internal/latency"
)

type dnsResult struct {
	Services int             `json:"services"`
	Clients  int             `json:"clients"`
	Queries  int64           `json:"queries"`
	Errors   int64           `json:"errors"`
	QPS      float64         `json:"queries_per_sec"`
	Latency  latency.Summary `json:"latency_ms"`
}

// benchDNS serves n services and queries random service names (A) from
// clients concurrent clients over UDP for d.
func benchDNS(ctx context.Context, n int, d time.Duration, clients int) (dnsResult, error) {
	res := dnsResult{Services: n, Clients: clients}
	svcs, slices := cluster(n, 1)
	client, err := fakeAPI(ctx, svcs, slices)
	if err != nil {
		return res, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	svcInf, sliceInf := factory.Core().V1().Services().Informer(), factory.Discovery().V1().EndpointSlices().Informer()
	catalog, err := keelsondns.NewInformerCatalog(svcInf, sliceInf)
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	factory.Start(runCtx.Done())
	if !cache.WaitForCacheSync(runCtx.Done(), svcInf.HasSynced, sliceInf.HasSynced) {
		return res, fmt.Errorf("caches did not sync")
	}
	dir, err := os.MkdirTemp("", "proxybench-dns-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return res, err
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := keelsondns.New(keelsondns.Options{Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ResolvConf: resolv}, catalog, quiet)
	if err != nil {
		return res, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	go func() { _ = srv.Serve(runCtx, pc, l) }()
	addr := pc.LocalAddr().String()

	var queries, errs atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("udp", addr)
			if err != nil {
				errs.Add(1)
				return
			}
			defer conn.Close()
			dc := &dns.Conn{Conn: conn}
			var mine []time.Duration
			for i := c; time.Now().Before(deadline); i += clients {
				m := new(dns.Msg).SetQuestion(fmt.Sprintf("svc-%05d.bench.svc.cluster.local.", (i*7919)%n), dns.TypeA)
				t0 := time.Now()
				_ = conn.SetDeadline(t0.Add(2 * time.Second))
				if err := dc.WriteMsg(m); err != nil {
					errs.Add(1)
					continue
				}
				r, err := dc.ReadMsg()
				if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					errs.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
				queries.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Queries, res.Errors = queries.Load(), errs.Load()
	res.QPS = latency.Rate(int(res.Queries), time.Since(start))
	res.Latency = latency.Summarize(lat)
	return res, nil
}
