package dns

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
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
