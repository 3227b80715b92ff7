package dns

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: queries are counted under CoreDNS's names and labels: per
// protocol and type, per rcode and answering part, with a duration each;
// an unusual type is folded into "other".
func TestMetrics(t *testing.T) {
	f := newFixture(t, clusterObjects()...)
	f.query(t, "my-nginx.default.svc.cluster.local.", dns.TypeA, "udp")
	f.query(t, "my-nginx.default.svc.cluster.local.", dns.TypeA, "tcp")
	f.query(t, "missing.default.svc.cluster.local.", dns.TypeAAAA, "udp")
	f.query(t, "www.example.com.", dns.TypeA, "udp")
	f.query(t, "my-nginx.default.svc.cluster.local.", dns.TypeLOC, "udp")
	server := "dns://" + f.addr
	want := strings.ReplaceAll(`
# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.
# TYPE coredns_dns_requests_total counter
coredns_dns_requests_total{family="1",proto="tcp",server="SERVER",type="A",view="",zone="."} 1
coredns_dns_requests_total{family="1",proto="udp",server="SERVER",type="A",view="",zone="."} 2
coredns_dns_requests_total{family="1",proto="udp",server="SERVER",type="AAAA",view="",zone="."} 1
coredns_dns_requests_total{family="1",proto="udp",server="SERVER",type="other",view="",zone="."} 1
# HELP coredns_dns_responses_total Counter of response status codes.
# TYPE coredns_dns_responses_total counter
coredns_dns_responses_total{plugin="forward",rcode="NOERROR",server="SERVER",view="",zone="."} 1
coredns_dns_responses_total{plugin="kubernetes",rcode="NOERROR",server="SERVER",view="",zone="."} 3
coredns_dns_responses_total{plugin="kubernetes",rcode="NXDOMAIN",server="SERVER",view="",zone="."} 1
`, "SERVER", server)
	if err := testutil.GatherAndCompare(f.metrics, strings.NewReader(want), "coredns_dns_requests_total", "coredns_dns_responses_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(f.metrics, "coredns_dns_request_duration_seconds"); n == 0 {
		t.Error("no request duration recorded")
	}
}

// fakeWriter is a dns.ResponseWriter with fixed addresses, for observe.
type fakeWriter struct {
	dns.ResponseWriter
	local, remote net.Addr
}

func (w fakeWriter) LocalAddr() net.Addr  { return w.local }
func (w fakeWriter) RemoteAddr() net.Addr { return w.remote }

// BenchmarkObserve is the metrics' cost per answered query.
func BenchmarkObserve(b *testing.B) {
	m := NewMetrics(prometheus.NewRegistry())
	w := fakeWriter{local: &net.UDPAddr{IP: net.IPv4(10, 43, 0, 10), Port: 53}, remote: &net.UDPAddr{IP: net.IPv4(10, 42, 1, 7), Port: 40000}}
	req := new(dns.Msg).SetQuestion("my-nginx.default.svc.cluster.local.", dns.TypeA)
	resp := new(dns.Msg).SetReply(req)
	b.ReportAllocs()
	for b.Loop() {
		m.observe(w, req, resp, pluginKubernetes, time.Millisecond)
	}
}
