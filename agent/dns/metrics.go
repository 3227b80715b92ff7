package dns

import (
	"net"
	"net/netip"
	"sync"
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

	// series caches each label combination's counters and histogram, and
	// servers each listener's server label, so a query costs map lookups
	// instead of building label strings and hashing them in the vectors.
	// Both stay small: a few listeners, and types folded into a fixed set.
	series  sync.Map // seriesKey -> *querySeries
	servers sync.Map // netip.AddrPort -> string
}

type seriesKey struct {
	server       string
	tcp, ipv6    bool
	qtype, rcode string
	plugin       string
}

type querySeries struct {
	request, response prometheus.Counter
	duration          prometheus.Observer
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
	k := seriesKey{server: m.serverLabel(w.LocalAddr()), qtype: "other", rcode: rcodeName(resp.Rcode), plugin: plugin}
	var ip netip.Addr
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		k.tcp, ip = true, a.AddrPort().Addr()
	case *net.UDPAddr:
		ip = a.AddrPort().Addr()
	}
	k.ipv6 = ip.IsValid() && !ip.Unmap().Is4()
	if len(req.Question) == 1 {
		k.qtype = queryType(req.Question[0].Qtype)
	}
	s := m.seriesFor(k)
	s.request.Inc()
	s.response.Inc()
	s.duration.Observe(took.Seconds())
}

// serverLabel is CoreDNS's server label ("dns://" and the listening
// address) of a listener, made once per address.
func (m *Metrics) serverLabel(local net.Addr) string {
	var ap netip.AddrPort
	switch a := local.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		return "dns://" + local.String()
	}
	if v, ok := m.servers.Load(ap); ok {
		return v.(string)
	}
	label := "dns://" + local.String()
	m.servers.Store(ap, label)
	return label
}

// seriesFor returns the series of a label combination, made on first use.
func (m *Metrics) seriesFor(k seriesKey) *querySeries {
	if v, ok := m.series.Load(k); ok {
		return v.(*querySeries)
	}
	proto, family := "udp", "1"
	if k.tcp {
		proto = "tcp"
	}
	if k.ipv6 {
		family = "2"
	}
	s := &querySeries{
		request:  m.requests.WithLabelValues(k.server, ".", "", proto, family, k.qtype),
		response: m.responses.WithLabelValues(k.server, ".", "", k.rcode, k.plugin),
		duration: m.duration.WithLabelValues(k.server, ".", "", k.qtype),
	}
	v, _ := m.series.LoadOrStore(k, s)
	return v.(*querySeries)
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
