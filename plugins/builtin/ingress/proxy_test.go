package ingress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// echo answers with its name and what it received.
func echo(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s host=%s xff=%s proto=%s xhost=%s h%d", name, r.URL.Path, r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.ProtoMajor)
	})
}

// endpointsWorld routes Services to the given endpoint addresses.
func endpointsWorld(eps map[string][]string, appProtocol map[string]string, ings ...*networkingv1.Ingress) World {
	return World{
		Ingresses: ings,
		Service: func(ns, name string) *v1.Service {
			sp := v1.ServicePort{Name: "web", Port: 80, Protocol: v1.ProtocolTCP}
			if p, ok := appProtocol[name]; ok {
				sp.AppProtocol = ptr.To(p)
			}
			return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1.ServiceSpec{Ports: []v1.ServicePort{sp}}}
		},
		Slices: func(ns, name string) []*discoveryv1.EndpointSlice {
			var out []*discoveryv1.EndpointSlice
			for _, a := range eps[name] {
				host, port, _ := net.SplitHostPort(a)
				var p int32
				fmt.Sscan(port, &p)
				out = append(out, &discoveryv1.EndpointSlice{Ports: []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(p)}},
					Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}}}})
			}
			return out
		},
	}
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func get(t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestProxyRoutesAndForwards(t *testing.T) {
	foo, bar := httptest.NewServer(echo("foo")), httptest.NewServer(echo("bar"))
	defer foo.Close()
	defer bar.Close()
	p := newTestProxy(t, false)
	p.Set(Build(endpointsWorld(map[string][]string{"foo": {addr(foo)}, "bar": {addr(bar)}}, nil,
		ing("fanout", 0, rule("example.com", path{"/foo", prefix, "foo"}, path{"/bar", prefix, "bar"})))))
	front := httptest.NewServer(p)
	defer front.Close()
	code, body := get(t, front.Client(), front.URL+"/foo/x", "example.com")
	if code != 200 || !strings.HasPrefix(body, "foo /foo/x host=example.com xff=127.0.0.1 proto=http xhost=example.com") {
		t.Errorf("/foo/x: %d %q", code, body)
	}
	if code, body = get(t, front.Client(), front.URL+"/bar", "example.com"); code != 200 || !strings.HasPrefix(body, "bar /bar") {
		t.Errorf("/bar: %d %q", code, body)
	}
	code, body = get(t, front.Client(), front.URL+"/baz", "example.com")
	if code != 404 || !strings.Contains(body, "no Ingress rule matches") {
		t.Errorf("/baz: %d %q, want 404 with a short reason", code, body)
	}
}

func TestProxyRetriesOnlyIdempotentRequestsOnConnectFailure(t *testing.T) {
	live := httptest.NewServer(echo("live"))
	defer live.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	p := newTestProxy(t, false)
	p.Set(Build(endpointsWorld(map[string][]string{"s": {dead, addr(live)}}, nil, ing("i", 0, rule("", path{"/", prefix, "s"})))))
	front := httptest.NewServer(p)
	defer front.Close()
	for range 4 {
		if code, body := get(t, front.Client(), front.URL+"/", "h"); code != 200 {
			t.Errorf("GET with a dead endpoint: %d %q, want 200 from the live one", code, body)
		}
	}
	failed := 0
	for range 4 {
		resp, err := front.Client().Post(front.URL+"/", "text/plain", strings.NewReader("once"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("%d of 4 POSTs failed, want 2: a POST goes to its endpoint round robin and is never retried", failed)
	}
}

func TestProxyTableSwapLetsInFlightRequestsFinish(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "old")
	}))
	defer slow.Close()
	fresh := httptest.NewServer(echo("new"))
	defer fresh.Close()
	p := newTestProxy(t, false)
	p.Set(Build(endpointsWorld(map[string][]string{"old": {addr(slow)}}, nil, ing("i", 0, rule("", path{"/", prefix, "old"})))))
	front := httptest.NewServer(p)
	defer front.Close()
	done := make(chan string)
	go func() {
		_, body := get(t, front.Client(), front.URL+"/", "h")
		done <- body
	}()
	<-arrived
	p.Set(Build(endpointsWorld(map[string][]string{"new": {addr(fresh)}}, nil, ing("i", 0, rule("", path{"/", prefix, "new"})))))
	if _, body := get(t, front.Client(), front.URL+"/", "h"); !strings.HasPrefix(body, "new") {
		t.Errorf("after the swap: %q, want the new backend", body)
	}
	close(release)
	if body := <-done; body != "old" {
		t.Errorf("the request in flight during the swap got %q, want old", body)
	}
}

func TestProxyTLSBySNIAndRedirect(t *testing.T) {
	backend := httptest.NewServer(echo("b"))
	defer backend.Close()
	sec := tlsSecret(t, "foo", "foo.com")
	i := withTLS(ing("i", 0, rule("foo.com", path{"/", prefix, "b"}), rule("plain.com", path{"/", prefix, "b"})), "foo", "foo.com")
	w, _ := tlsWorld(t, []*v1.Secret{sec}, i)
	eps := endpointsWorld(map[string][]string{"b": {addr(backend)}}, nil)
	w.Service, w.Slices = eps.Service, eps.Slices
	p := newTestProxy(t, true)
	p.Set(Build(w))
	front := httptest.NewUnstartedServer(p)
	front.TLS = &tls.Config{GetCertificate: p.GetCertificate}
	front.StartTLS()
	defer front.Close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(sec.Data[v1.TLSCertKey])
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "foo.com"}}}
	code, body := get(t, c, front.URL+"/x", "foo.com")
	if code != 200 || !strings.Contains(body, "proto=https") {
		t.Errorf("https://foo.com/x: %d %q, want 200 with X-Forwarded-Proto https", code, body)
	}
	plain := httptest.NewServer(p)
	defer plain.Close()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, plain.URL+"/x?y=1", nil)
	req.Host = "foo.com"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://foo.com/x?y=1" {
		t.Errorf("http://foo.com/x: %d to %q, want 308 to https://foo.com/x?y=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := get(t, noFollow, plain.URL+"/x", "plain.com"); code != 200 {
		t.Errorf("http://plain.com (no TLS): %d, want served over HTTP", code)
	}
}

func TestProxyH2CAndUpgrade(t *testing.T) {
	h2 := httptest.NewUnstartedServer(echo("grpc"))
	h2.Config.Protocols = new(http.Protocols)
	h2.Config.Protocols.SetUnencryptedHTTP2(true)
	h2.Start()
	defer h2.Close()
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo " + line)
		rw.Flush()
	}))
	defer ws.Close()
	p := newTestProxy(t, false)
	routed := p.metrics.requests
	p.Set(Build(endpointsWorld(map[string][]string{"grpc": {addr(h2)}, "ws": {addr(ws)}}, map[string]string{"grpc": "kubernetes.io/h2c"},
		ing("i", 0, rule("", path{"/grpc", prefix, "grpc"}, path{"/ws", prefix, "ws"})))))
	front := httptest.NewUnstartedServer(p)
	front.Config.Protocols = new(http.Protocols)
	front.Config.Protocols.SetHTTP1(true)
	front.Config.Protocols.SetUnencryptedHTTP2(true)
	front.Start()
	defer front.Close()
	h2c := &http.Transport{Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	code, body := get(t, &http.Client{Transport: h2c}, front.URL+"/grpc", "h")
	if code != 200 || !strings.HasSuffix(body, "h2") {
		t.Errorf("h2c to an h2c backend: %d %q, want HTTP/2 end to end", code, body)
	}
	conn, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr(front))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "hello\n")
	if line, _ := r.ReadString('\n'); line != "echo hello\n" {
		t.Errorf("through the upgraded connection: %q", line)
	}
	conn.Close()
	// An upgraded connection's handler ends after both sides closed, and
	// counts then; the deadline is a hang guard, not a timing claim.
	count := func(path, code string) float64 {
		return testutil.ToFloat64(routed.WithLabelValues("default", "i", "*", path, path[1:]+":80", code))
	}
	for deadline := time.Now().Add(30 * time.Second); count("/ws", "1xx") == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := count("/ws", "1xx"); n != 1 {
		t.Errorf("ingress_requests_total of the upgraded /ws with code 1xx: %v, want 1", n)
	}
	if n := count("/grpc", "2xx"); n != 1 {
		t.Errorf("ingress_requests_total of /grpc with code 2xx: %v, want 1", n)
	}
}

// newTestProxy is a proxy whose metrics go to a registry of the test's
// own, so every test also runs the metrics' response writer.
func newTestProxy(t *testing.T, redirect bool) *Proxy {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return NewProxy(slog.New(slog.DiscardHandler), redirect, m)
}
