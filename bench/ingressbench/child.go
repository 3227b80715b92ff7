package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/ingress"
)

// childEnv names the role a re-executed ingressbench plays: "backend" or
// "keelson" (the data plane, routing to the backend in backendEnv).
const (
	childEnv   = "KEELSON_INGRESSBENCH_ROLE"
	backendEnv = "KEELSON_INGRESSBENCH_BACKEND"
	// benchHost is the Host the requests carry and the routes match.
	benchHost = "bench.example"
)

// child serves its role on a loopback port and writes "listening ADDR" to
// stdout; it serves until killed.
func child(role string) int {
	var h http.Handler
	switch role {
	case "backend":
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	case "keelson":
		n, err := ingressesFromEnv()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingressbench keelson:", err)
			return 2
		}
		p, err := dataPlane(os.Getenv(backendEnv), n)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingressbench keelson:", err)
			return 1
		}
		// As the node part does once its caches are filled: its GC
		// setting (gogc, heapLimit) at their defaults, unless GOGC
		// (-proxy-gogc) or GOMEMLIMIT is in the environment.
		go ingress.TuneGC(context.Background(), ingress.DefaultConfig(), slog.New(slog.DiscardHandler))
		h = p
	default:
		fmt.Fprintf(os.Stderr, "ingressbench: %s=%q is not a role (backend, keelson)\n", childEnv, role)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingressbench", role+":", err)
		return 1
	}
	fmt.Println("listening", ln.Addr())
	// As the node part serves its HTTP port.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	fmt.Fprintln(os.Stderr, "ingressbench", role+":", srv.Serve(ln))
	return 1
}

// dataPlane is keelson's ingress proxy, with its metrics as the node part
// runs it, serving one Ingress: benchHost, prefix /, to a Service whose
// one ready endpoint is backend (host:port); with n > 0 its table and
// caches also hold n other Ingresses with their Services and
// EndpointSlices (newCaches).
func dataPlane(backend string, n int) (*cachedProxy, error) {
	host, portStr, err := net.SplitHostPort(backend)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", backendEnv, backend, err)
	}
	port, err := strconv.ParseInt(portStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: port: %w", backendEnv, backend, err)
	}
	m, err := ingress.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	c, err := newCaches(n)
	if err != nil {
		return nil, err
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "bench", Namespace: "default"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{hostRule(benchHost, "backend", 80)}}}
	w := c.world(ing, func(ns, name string) *v1.Service {
		return &v1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "web", Port: 80, Protocol: v1.ProtocolTCP}}}}
	}, func(ns, name string) []*discoveryv1.EndpointSlice {
		return []*discoveryv1.EndpointSlice{{
			Ports:     []discoveryv1.EndpointPort{{Name: ptr.To("web"), Port: ptr.To(int32(port))}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}}
	})
	t := ingress.Build(w)
	if len(t.Problems) > 0 {
		return nil, fmt.Errorf("routing table: %v", t.Problems)
	}
	p := ingress.NewProxy(slog.New(slog.DiscardHandler), false, m)
	p.Set(t)
	return &cachedProxy{Proxy: p, caches: c}, nil
}

// cachedProxy is the proxy with the caches its table was built from, which
// it holds for its life as the node part's informers hold theirs.
type cachedProxy struct {
	*ingress.Proxy
	caches *caches
}
