package dns

import (
	"net"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cluster DNS server's figures under CoreDNS's names
// (plugin/metrics), so that dashboards and alerts written for a cluster's
// CoreDNS read a Keelson node's DNS. As CoreDNS does with the usual
// Corefile, every query is counted in zone "." (one server block).
type Metrics struct {
	requests  *prometheus.CounterVec
	responses *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics registers the DNS families with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "dns", Name: "requests_total",
			Help: "Counter of DNS requests made per zone, protocol and family."}, []string{"server", "zone", "view", "proto", "family", "type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "dns", Name: "responses_total",
			Help: "Counter of response status codes."}, []string{"server", "zone", "view", "rcode", "plugin"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "coredns", Subsystem: "dns", Name: "request_duration_seconds",
			Help: "Histogram of the time (in seconds) each request took per zone.", Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16)},
			[]string{"server", "zone", "view", "type"}),
	}
	reg.MustRegister(m.requests, m.responses, m.duration)
	return m
}

// Plugin labels of responses, after the CoreDNS plugin that would have
// written them.
const (
	pluginKubernetes = "kubernetes" // the cluster's own records
	pluginForward    = "forward"    // relayed to the node's resolvers
	pluginNone       = ""           // refused before any lookup
)

// observe counts one answered query.
func (m *Metrics) observe(w dns.ResponseWriter, req, resp *dns.Msg, plugin string, took time.Duration) {
	if m == nil {
		return
	}
	server := "dns://" + w.LocalAddr().String()
	proto, family := "udp", "1"
	var ip net.IP
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		proto, ip = "tcp", a.IP
	case *net.UDPAddr:
		ip = a.IP
	}
	if ip != nil && ip.To4() == nil {
		family = "2"
	}
	qtype := "other"
	if len(req.Question) == 1 {
		qtype = queryType(req.Question[0].Qtype)
	}
	m.requests.WithLabelValues(server, ".", "", proto, family, qtype).Inc()
	m.responses.WithLabelValues(server, ".", "", rcodeName(resp.Rcode), plugin).Inc()
	m.duration.WithLabelValues(server, ".", "", qtype).Observe(took.Seconds())
}

// queryType names the common query types and folds the rest into "other",
// as CoreDNS does, so a client cannot make the label set grow.
func queryType(t uint16) string {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSRV, dns.TypePTR, dns.TypeMX, dns.TypeTXT,
		dns.TypeNS, dns.TypeSOA, dns.TypeANY, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeDS, dns.TypeDNSKEY,
		dns.TypeNAPTR, dns.TypeAXFR, dns.TypeIXFR:
		return dns.TypeToString[t]
	}
	return "other"
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "other"
}
