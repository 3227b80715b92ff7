package upgrade

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/e2e/ha"
)

// outage tracks the longest stretch without a success.
type outage struct {
	mu      sync.Mutex
	lastOK  time.Time
	longest time.Duration
	// longestFrom is when the longest stretch began (its last success).
	longestFrom time.Time
	ok, bad     int
	lastErr     string
}

// stretch counts the stretch from the last success to now.
func (o *outage) stretch(now time.Time) {
	if o.lastOK.IsZero() {
		return
	}
	if d := now.Sub(o.lastOK); d > o.longest {
		o.longest, o.longestFrom = d, o.lastOK
	}
}

func (o *outage) record(now time.Time, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err != nil {
		o.bad++
		o.lastErr = err.Error()
		return
	}
	o.ok++
	o.stretch(now)
	o.lastOK = now
}

// finish counts the stretch from the last success to now.
func (o *outage) finish(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stretch(now)
}

func (o *outage) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := fmt.Sprintf("%d answered, %d failed, longest gap %s", o.ok, o.bad, o.longest.Round(time.Millisecond))
	if !o.longestFrom.IsZero() {
		s += " from " + o.longestFrom.UTC().Format("15:04:05.000")
	}
	if o.lastErr != "" {
		s += " (last error: " + o.lastErr + ")"
	}
	return s
}

// writer creates ConfigMaps through every server at once, one client per
// server writing one at a time (the client of a stopped server pauses
// until it runs again), and remembers which creates were acknowledged. Its outage is the longest stretch in which no
// server acknowledged a write: how long the API was down for clients.
type writer struct {
	servers []*ha.Server
	clients []kubernetes.Interface
	ns      string

	outage
	acked []string
}

func (w *writer) run(ctx context.Context) {
	var wg sync.WaitGroup
	for k := range w.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.writeThrough(ctx, k)
		}()
	}
	wg.Wait()
}

func (w *writer) writeThrough(ctx context.Context, k int) {
	s := w.servers[k]
	for n := 0; ctx.Err() == nil; {
		if !s.Serving() {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		name := fmt.Sprintf("w-%s-%06d", s.Name, n)
		n++
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := w.clients[k].CoreV1().ConfigMaps(w.ns).Create(cctx,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("%s via %s: %w", name, s.Name, err)
		}
		w.record(time.Now(), err)
		if err == nil {
			w.mu.Lock()
			w.acked = append(w.acked, name)
			w.mu.Unlock()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ackedNames is every acknowledged create so far.
func (w *writer) ackedNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}

// prober GETs a NodePort on one node's address every 100 ms, as a client
// outside the cluster pinned to that node would.
type prober struct {
	url string
	outage
}

func newProber(nodeIP, port string) *prober {
	return &prober{url: "http://" + net.JoinHostPort(nodeIP, port) + "/"}
}

// probeClient opens a new connection per request, so each one goes
// through the node's Service rules afresh.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func (p *prober) run(ctx context.Context) {
	for ctx.Err() == nil {
		err := get(ctx, probeClient, p.url)
		if ctx.Err() != nil {
			return
		}
		p.record(time.Now(), err)
		time.Sleep(100 * time.Millisecond)
	}
}

func get(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "web-") {
		return fmt.Errorf("%s: %s: %q", url, resp.Status, b)
	}
	return nil
}
