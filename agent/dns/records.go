package dns

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
)

// schemaVersion is the version of the Kubernetes DNS specification served
// at dns-version.<zone> (TXT).
const schemaVersion = "1.1.0"

// Resolver answers questions about the cluster domain from a Catalog; a
// pure function of the catalog's content, so that every record is tested
// without a network.
type Resolver struct {
	// Zone is the cluster domain as a lower-case FQDN ("cluster.local.").
	Zone    string
	TTL     uint32
	Catalog Catalog
}

// Answer is the resolver's reply to one question.
type Answer struct {
	Rcode         int
	Answer, Extra []dns.RR
	Ns            []dns.RR
	// Forward: the name is not the cluster's; ask the upstream servers.
	Forward bool
	// Chase names an ExternalName target outside the zone whose records
	// the server should fetch upstream and append.
	Chase string
}

// endpointRef is one ready endpoint address of a headless service.
type endpointRef struct {
	addr     netip.Addr
	hostname string // the endpoint's hostname, or its address with dashes
	ports    []discovery.EndpointPort
}

// Resolve answers q. Names are matched case-insensitively; answers carry
// the question's spelling, as resolvers expect.
func (r *Resolver) Resolve(q dns.Question) Answer {
	name := strings.ToLower(dns.Fqdn(q.Name))
	switch {
	case q.Qtype == dns.TypePTR && (dns.IsSubDomain("in-addr.arpa.", name) || dns.IsSubDomain("ip6.arpa.", name)):
		return r.reverse(q, name)
	case !dns.IsSubDomain(r.Zone, name):
		return Answer{Forward: true}
	}
	labels := dns.SplitDomainName(strings.TrimSuffix(strings.TrimSuffix(name, r.Zone), "."))
	n := len(labels)
	switch {
	case n == 0:
		return r.apex(q)
	case n == 1 && labels[0] == "dns-version":
		if q.Qtype != dns.TypeTXT {
			return r.noData()
		}
		return Answer{Answer: []dns.RR{&dns.TXT{Hdr: r.hdr(q.Name, dns.TypeTXT), Txt: []string{schemaVersion}}}}
	case labels[n-1] == "svc":
		return r.svcZone(q, labels[:n-1])
	case labels[n-1] == "pod":
		return r.podZone(q, labels[:n-1])
	}
	return r.nxDomain()
}

// svcZone answers names under svc.<zone>; labels are what precedes it.
func (r *Resolver) svcZone(q dns.Question, labels []string) Answer {
	switch len(labels) {
	case 0:
		return r.noData()
	case 1: // <ns>.svc: exists while the namespace has services
		if r.Catalog.HasServices(labels[0]) {
			return r.noData()
		}
		return r.nxDomain()
	case 2:
		svc := r.Catalog.Service(labels[1], labels[0])
		if svc == nil {
			return r.nxDomain()
		}
		return r.service(q, svc)
	case 3:
		svc := r.Catalog.Service(labels[2], labels[1])
		if svc == nil || !headless(svc) {
			return r.nxDomain()
		}
		return r.endpointName(q, svc, labels[0])
	case 4:
		if !strings.HasPrefix(labels[0], "_") || !strings.HasPrefix(labels[1], "_") {
			return r.nxDomain()
		}
		svc := r.Catalog.Service(labels[3], labels[2])
		if svc == nil {
			return r.nxDomain()
		}
		return r.srv(q, svc, labels[0][1:], labels[1][1:])
	}
	return r.nxDomain()
}

func headless(svc *v1.Service) bool {
	return svc.Spec.ClusterIP == v1.ClusterIPNone
}

// serviceName is the service's own FQDN.
func (r *Resolver) serviceName(svc *v1.Service) string {
	return svc.Name + "." + svc.Namespace + ".svc." + r.Zone
}

// service answers <svc>.<ns>.svc.<zone>.
func (r *Resolver) service(q dns.Question, svc *v1.Service) Answer {
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return r.externalName(q, svc)
	}
	if q.Qtype == dns.TypeSRV {
		return r.srv(q, svc, "", "")
	}
	if headless(svc) {
		eps := r.readyEndpoints(svc)
		if len(eps) == 0 {
			return r.nxDomain()
		}
		var a Answer
		seen := map[netip.Addr]bool{}
		for _, ep := range eps {
			if !seen[ep.addr] {
				seen[ep.addr] = true
				a.Answer = appendAddr(a.Answer, r.hdrFor(q.Name, ep.addr), ep.addr, q.Qtype)
			}
		}
		return r.orNoData(a)
	}
	var a Answer
	for _, ip := range clusterIPs(svc) {
		a.Answer = appendAddr(a.Answer, r.hdrFor(q.Name, ip), ip, q.Qtype)
	}
	return r.orNoData(a)
}

// externalName answers a CNAME to the service's external name, with the
// target's records when the target is in the cluster zone (the server
// fetches them upstream otherwise).
func (r *Resolver) externalName(q dns.Question, svc *v1.Service) Answer {
	target := strings.ToLower(dns.Fqdn(svc.Spec.ExternalName))
	if _, ok := dns.IsDomainName(target); !ok || target == "." {
		return r.nxDomain()
	}
	a := Answer{Answer: []dns.RR{&dns.CNAME{Hdr: r.hdr(q.Name, dns.TypeCNAME), Target: target}}}
	if q.Qtype == dns.TypeCNAME {
		return a
	}
	if !dns.IsSubDomain(r.Zone, target) {
		a.Chase = target
		return a
	}
	if dns.CountLabel(target) > 64 { // a loop of ExternalNames
		return a
	}
	inner := r.Resolve(dns.Question{Name: target, Qtype: q.Qtype, Qclass: q.Qclass})
	a.Answer = append(a.Answer, inner.Answer...)
	a.Extra = inner.Extra
	return a
}

// readyEndpoints are the addresses a headless service's name resolves to:
// ready endpoints, or all when the service publishes unready addresses.
func (r *Resolver) readyEndpoints(svc *v1.Service) []endpointRef {
	var out []endpointRef
	for _, s := range r.Catalog.EndpointSlices(svc.Namespace, svc.Name) {
		if s.AddressType == discovery.AddressTypeFQDN {
			continue
		}
		for _, e := range s.Endpoints {
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, addr := range e.Addresses {
				ip, err := netip.ParseAddr(addr)
				if err != nil {
					continue
				}
				ip = ip.Unmap()
				host := dashed(ip)
				if e.Hostname != nil && *e.Hostname != "" {
					host = strings.ToLower(*e.Hostname)
				}
				out = append(out, endpointRef{addr: ip, hostname: host, ports: s.Ports})
			}
		}
	}
	slices.SortFunc(out, func(a, b endpointRef) int { return a.addr.Compare(b.addr) })
	return out
}

// endpointName answers <hostname>.<svc>.<ns>.svc.<zone> of a headless
// service: an endpoint named by its hostname or its dashed address.
func (r *Resolver) endpointName(q dns.Question, svc *v1.Service, label string) Answer {
	var a Answer
	found := false
	for _, ep := range r.readyEndpoints(svc) {
		if ep.hostname == label || dashed(ep.addr) == label {
			found = true
			a.Answer = appendAddr(a.Answer, r.hdrFor(q.Name, ep.addr), ep.addr, q.Qtype)
		}
	}
	if !found {
		return r.nxDomain()
	}
	return r.orNoData(a)
}

// srv answers _<port>._<proto>.<svc>.<ns>.svc.<zone> (port and proto set)
// or an SRV query on the service name itself (all ports).
func (r *Resolver) srv(q dns.Question, svc *v1.Service, port, proto string) Answer {
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		return r.nxDomain()
	}
	var matching []v1.ServicePort
	for _, p := range svc.Spec.Ports {
		pp := strings.ToLower(string(p.Protocol))
		if pp == "" {
			pp = "tcp"
		}
		if port == "" || (p.Name != "" && strings.ToLower(p.Name) == port && pp == proto) {
			matching = append(matching, p)
		}
	}
	if len(matching) == 0 {
		return r.nxDomain()
	}
	if q.Qtype != dns.TypeSRV {
		return r.noData()
	}
	var a Answer
	if !headless(svc) {
		target := r.serviceName(svc)
		for _, p := range matching {
			a.Answer = append(a.Answer, &dns.SRV{Hdr: r.hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: 100, Port: uint16(p.Port), Target: target})
		}
		for _, ip := range clusterIPs(svc) {
			a.Extra = appendAddr(a.Extra, r.hdrFor(target, ip), ip, dns.TypeANY)
		}
		return a
	}
	eps := r.readyEndpoints(svc)
	if len(eps) == 0 {
		return r.nxDomain()
	}
	for _, ep := range eps {
		target := ep.hostname + "." + r.serviceName(svc)
		for _, p := range matching {
			epPort, ok := endpointPort(ep.ports, p)
			if !ok {
				continue
			}
			a.Answer = append(a.Answer, &dns.SRV{Hdr: r.hdr(q.Name, dns.TypeSRV), Priority: 0, Weight: uint16(max(1, 100/len(eps))), Port: epPort, Target: target})
		}
		a.Extra = appendAddr(a.Extra, r.hdrFor(target, ep.addr), ep.addr, dns.TypeANY)
	}
	return a
}

// endpointPort is the endpoint port that serves service port p (same name
// and protocol).
func endpointPort(ports []discovery.EndpointPort, p v1.ServicePort) (uint16, bool) {
	proto := p.Protocol
	if proto == "" {
		proto = v1.ProtocolTCP
	}
	for _, ep := range ports {
		name := ""
		if ep.Name != nil {
			name = *ep.Name
		}
		epProto := v1.ProtocolTCP
		if ep.Protocol != nil {
			epProto = *ep.Protocol
		}
		if name == p.Name && epProto == proto && ep.Port != nil {
			return uint16(*ep.Port), true
		}
	}
	return 0, false
}

// podZone answers <a-b-c-d>.<ns>.pod.<zone>: the address in the name
// (kube-dns' and CoreDNS' "pods insecure" behaviour, the usual default).
func (r *Resolver) podZone(q dns.Question, labels []string) Answer {
	switch len(labels) {
	case 0, 1:
		return r.noData()
	case 2:
		ip, ok := undash(labels[0])
		if !ok {
			return r.nxDomain()
		}
		var a Answer
		a.Answer = appendAddr(nil, r.hdrFor(q.Name, ip), ip, q.Qtype)
		return r.orNoData(a)
	}
	return r.nxDomain()
}

// apex answers the zone's own name: SOA and NS.
func (r *Resolver) apex(q dns.Question) Answer {
	switch q.Qtype {
	case dns.TypeSOA:
		return Answer{Answer: []dns.RR{r.soa()}}
	case dns.TypeNS:
		return Answer{Answer: []dns.RR{&dns.NS{Hdr: r.hdr(r.Zone, dns.TypeNS), Ns: "ns.dns." + r.Zone}}}
	}
	return r.noData()
}

// reverse answers PTR queries for cluster IPs and headless endpoints; other
// addresses are the upstream servers' business.
func (r *Resolver) reverse(q dns.Question, name string) Answer {
	ip, ok := reverseIP(name)
	if !ok {
		return Answer{Forward: true}
	}
	var a Answer
	for _, svc := range r.Catalog.ServicesByIP(ip.String()) {
		a.Answer = append(a.Answer, &dns.PTR{Hdr: r.hdr(q.Name, dns.TypePTR), Ptr: r.serviceName(svc)})
	}
	for _, s := range r.Catalog.EndpointSlicesByIP(ip.String()) {
		svc := r.Catalog.Service(s.Namespace, s.Labels[discovery.LabelServiceName])
		if svc == nil || !headless(svc) {
			continue
		}
		for _, ep := range r.readyEndpoints(svc) {
			if ep.addr == ip {
				a.Answer = append(a.Answer, &dns.PTR{Hdr: r.hdr(q.Name, dns.TypePTR), Ptr: ep.hostname + "." + r.serviceName(svc)})
			}
		}
	}
	if len(a.Answer) == 0 {
		return Answer{Forward: true}
	}
	a.Answer = dedupe(a.Answer)
	return a
}

func dedupe(rrs []dns.RR) []dns.RR {
	seen := map[string]bool{}
	out := rrs[:0]
	for _, rr := range rrs {
		if k := rr.String(); !seen[k] {
			seen[k] = true
			out = append(out, rr)
		}
	}
	return out
}

func (r *Resolver) nxDomain() Answer {
	return Answer{Rcode: dns.RcodeNameError, Ns: []dns.RR{r.soa()}}
}

func (r *Resolver) noData() Answer { return Answer{Ns: []dns.RR{r.soa()}} }

// orNoData turns an empty answer into NODATA (the name exists, not with
// records of the asked type).
func (r *Resolver) orNoData(a Answer) Answer {
	if len(a.Answer) == 0 {
		return r.noData()
	}
	return a
}

func (r *Resolver) soa() dns.RR {
	return &dns.SOA{Hdr: r.hdr(r.Zone, dns.TypeSOA), Ns: "ns.dns." + r.Zone, Mbox: "hostmaster." + r.Zone,
		Serial: 1, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: r.TTL}
}

func (r *Resolver) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: r.TTL}
}

func (r *Resolver) hdrFor(name string, ip netip.Addr) dns.RR_Header {
	if ip.Is4() {
		return r.hdr(name, dns.TypeA)
	}
	return r.hdr(name, dns.TypeAAAA)
}

// appendAddr adds an A or AAAA record for ip if qtype asks for its family
// (ANY asks for both).
func appendAddr(rrs []dns.RR, hdr dns.RR_Header, ip netip.Addr, qtype uint16) []dns.RR {
	switch {
	case ip.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY):
		return append(rrs, &dns.A{Hdr: hdr, A: ip.AsSlice()})
	case ip.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY):
		return append(rrs, &dns.AAAA{Hdr: hdr, AAAA: ip.AsSlice()})
	}
	return rrs
}

func clusterIPs(svc *v1.Service) []netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// dashed writes an address as one DNS label: 10-244-1-5, fd00--5.
func dashed(ip netip.Addr) string {
	if ip.Is4() {
		return strings.ReplaceAll(ip.String(), ".", "-")
	}
	return strings.ReplaceAll(ip.String(), ":", "-")
}

func undash(label string) (netip.Addr, bool) {
	for _, sep := range []string{".", ":"} {
		if ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", sep)); err == nil {
			return ip.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// reverseIP parses a PTR name (4.3.2.1.in-addr.arpa., or 32 nibbles under
// ip6.arpa.) into an address.
func reverseIP(name string) (netip.Addr, bool) {
	labels := dns.SplitDomainName(name)
	if strings.HasSuffix(name, ".in-addr.arpa.") && len(labels) == 6 {
		var b [4]byte
		for i := 0; i < 4; i++ {
			v, err := strconv.ParseUint(labels[3-i], 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			b[i] = byte(v)
		}
		return netip.AddrFrom4(b), true
	}
	if strings.HasSuffix(name, ".ip6.arpa.") && len(labels) == 34 {
		var b [16]byte
		for i := 0; i < 32; i++ {
			v, err := strconv.ParseUint(labels[31-i], 16, 4)
			if err != nil || len(labels[31-i]) != 1 {
				return netip.Addr{}, false
			}
			if i%2 == 0 {
				b[i/2] = byte(v) << 4
			} else {
				b[i/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// canonicalIP is the form addresses are indexed by.
func canonicalIP(s string) string {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return ip.Unmap().String()
}
