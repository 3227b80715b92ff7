package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ruleFilters are the filters of one HTTPRoute rule that the plugin
// implements.
type ruleFilters struct {
	reqHeaders, respHeaders *gatewayv1.HTTPHeaderFilter
	redirect                *gatewayv1.HTTPRequestRedirectFilter
	rewrite                 *gatewayv1.HTTPURLRewriteFilter
}

// compileFilters takes a rule's filters; an error names one the plugin
// does not implement.
func compileFilters(rule gatewayv1.HTTPRouteRule) (ruleFilters, error) {
	var f ruleFilters
	for _, br := range rule.BackendRefs {
		if len(br.Filters) > 0 {
			return f, errors.New("filters on backendRefs are not supported")
		}
	}
	for _, x := range rule.Filters {
		switch x.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			f.reqHeaders = x.RequestHeaderModifier
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			f.respHeaders = x.ResponseHeaderModifier
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			f.redirect = x.RequestRedirect
		case gatewayv1.HTTPRouteFilterURLRewrite:
			f.rewrite = x.URLRewrite
		default:
			return f, fmt.Errorf("filter type %s is not supported", x.Type)
		}
	}
	if f.redirect != nil && len(rule.BackendRefs) > 0 {
		return f, errors.New("a RequestRedirect filter cannot be combined with backendRefs")
	}
	return f, nil
}

// gwPort is one Gateway listener port as served: its virtual hosts (the
// hostnames routes serve, most specific first) and, for HTTPS, the
// listeners' certificates.
type gwPort struct {
	port  int32
	https bool
	exact map[string]*gwVHost
	wild  []*gwVHost // longest suffix first once sealed
	any   *gwVHost
	certs []hostCert
}

type gwVHost struct {
	host  string
	rules []*gwRule
}

type hostCert struct {
	host string // the listener's hostname, "" any
	cert *tls.Certificate
}

func newGWPort(port int32, https bool) *gwPort {
	return &gwPort{port: port, https: https, exact: map[string]*gwVHost{}}
}

func (gp *gwPort) add(host string, rules []*gwRule) {
	var v *gwVHost
	switch {
	case host == "":
		if gp.any == nil {
			gp.any = &gwVHost{}
		}
		v = gp.any
	case strings.HasPrefix(host, "*"):
		i := slices.IndexFunc(gp.wild, func(x *gwVHost) bool { return x.host == host })
		if i < 0 {
			gp.wild = append(gp.wild, &gwVHost{host: host})
			i = len(gp.wild) - 1
		}
		v = gp.wild[i]
	default:
		if gp.exact[host] == nil {
			gp.exact[host] = &gwVHost{host: host}
		}
		v = gp.exact[host]
	}
	v.rules = append(v.rules, rules...)
}

// seal orders the wildcards and every virtual host's rules by precedence.
func (gp *gwPort) seal() {
	slices.SortStableFunc(gp.wild, func(a, b *gwVHost) int { return len(b.host) - len(a.host) })
	sortRules := func(v *gwVHost) {
		slices.SortStableFunc(v.rules, func(a, b *gwRule) int { return compareRank(a.rank, b.rank) })
		v.rules = slices.CompactFunc(v.rules, func(a, b *gwRule) bool { return a == b })
	}
	for _, v := range gp.exact {
		sortRules(v)
	}
	for _, v := range gp.wild {
		sortRules(v)
	}
	if gp.any != nil {
		sortRules(gp.any)
	}
}

// vhost is the most specific virtual host serving host.
func (gp *gwPort) vhost(host string) *gwVHost {
	if v, ok := gp.exact[host]; ok {
		return v
	}
	for _, v := range gp.wild {
		if wildcardCovers(v.host, host) {
			return v
		}
	}
	return gp.any
}

// rule is the first rule, in precedence order, matching r.
func (gp *gwPort) rule(r *http.Request) *gwRule {
	v := gp.vhost(requestHost(r.Host))
	if v == nil {
		return nil
	}
	for _, rule := range v.rules {
		if rule.match.matches(r) {
			return rule
		}
	}
	return nil
}

// certificate picks the certificate of the listener whose hostname best
// matches the SNI name.
func (gp *gwPort) certificate(sni string) *tls.Certificate {
	sni = strings.ToLower(sni)
	var best *tls.Certificate
	bestLen := -1
	for _, hc := range gp.certs {
		n := -1
		switch {
		case hc.host == sni:
			n = 1 << 20
		case wildcardCovers(hc.host, sni):
			n = len(hc.host)
		case hc.host == "":
			n = 0
		}
		if n > bestLen {
			best, bestLen = hc.cert, n
		}
	}
	if best == nil && len(gp.certs) > 0 {
		best = gp.certs[0].cert
	}
	return best
}

// serveGateway answers a request that arrived on a Gateway listener port.
func (p *Proxy) serveGateway(w http.ResponseWriter, r *http.Request, gp *gwPort) {
	rule := gp.rule(r)
	if rule == nil {
		p.metrics.unmatchedRequest()
		http.Error(w, fmt.Sprintf("404 no HTTPRoute rule matches host %q path %q", requestHost(r.Host), r.URL.Path), http.StatusNotFound)
		return
	}
	rt := rule.route
	st := newInflight(r.Context(), rt)
	if rt.obs != nil {
		w = st.record(w)
		defer st.done(time.Now())
	}
	if rd := rule.filters.redirect; rd != nil {
		http.Redirect(w, r, redirectURL(r, rd, rule.match, gp), redirectCode(rd))
		return
	}
	if rule.problem != "" {
		http.Error(w, "500 "+rule.problem, http.StatusInternalServerError)
		return
	}
	wb := rule.pick()
	if wb.invalid {
		http.Error(w, "500 "+wb.b.Problem, http.StatusInternalServerError)
		return
	}
	if len(wb.b.Endpoints) == 0 {
		rt.obs.upstreamError(reasonNoEndpoints)
		http.Error(w, "503 backend "+wb.b.Name+" has no ready endpoints", http.StatusServiceUnavailable)
		return
	}
	st.sel.respHeaders = rule.filters.respHeaders
	r = r.Clone(st.to(wb.b))
	modifyHeaders(r.Header, rule.filters.reqHeaders)
	if rw := rule.filters.rewrite; rw != nil {
		rewrite(r, rw, rule.match)
	}
	p.rp.ServeHTTP(w, r)
}

// modifyHeaders applies a header filter: set, add, then remove.
func modifyHeaders(h http.Header, f *gatewayv1.HTTPHeaderFilter) {
	if f == nil {
		return
	}
	for _, x := range f.Set {
		h.Set(string(x.Name), x.Value)
	}
	for _, x := range f.Add {
		h.Add(string(x.Name), x.Value)
	}
	for _, n := range f.Remove {
		h.Del(n)
	}
}

// replacePath applies a path modifier to a request path; a prefix
// replacement replaces the part the rule's PathPrefix matched.
func replacePath(path string, m *gatewayv1.HTTPPathModifier, match gwMatch) string {
	if m == nil {
		return path
	}
	switch m.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if m.ReplaceFullPath != nil {
			return *m.ReplaceFullPath
		}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if m.ReplacePrefixMatch == nil || match.pathType != gatewayv1.PathMatchPathPrefix {
			return path
		}
		rest := path[min(len(match.path), len(path)):]
		repl := *m.ReplacePrefixMatch
		if strings.HasSuffix(repl, "/") && strings.HasPrefix(rest, "/") {
			rest = rest[1:]
		}
		if out := repl + rest; out != "" {
			if !strings.HasPrefix(out, "/") {
				out = "/" + out
			}
			return out
		}
		return "/"
	}
	return path
}

func rewrite(r *http.Request, rw *gatewayv1.HTTPURLRewriteFilter, match gwMatch) {
	if rw.Hostname != nil {
		r.Host = string(*rw.Hostname)
	}
	if rw.Path != nil {
		r.URL.Path = replacePath(r.URL.Path, rw.Path, match)
		r.URL.RawPath = ""
	}
}

func redirectCode(rd *gatewayv1.HTTPRequestRedirectFilter) int {
	if rd.StatusCode != nil {
		return *rd.StatusCode
	}
	return http.StatusFound
}

// redirectURL is a redirect's Location: the scheme, host, port and path
// the filter sets, the request's otherwise; a port well known for the
// scheme is left out.
func redirectURL(r *http.Request, rd *gatewayv1.HTTPRequestRedirectFilter, match gwMatch, gp *gwPort) string {
	scheme := "http"
	if gp.https {
		scheme = "https"
	}
	port := int(gp.port)
	if rd.Scheme != nil {
		scheme = *rd.Scheme
		port = map[string]int{"http": 80, "https": 443}[scheme]
	}
	if rd.Port != nil {
		port = int(*rd.Port)
	}
	host := requestHost(r.Host)
	if rd.Hostname != nil {
		host = string(*rd.Hostname)
	}
	hostport := host
	if port != 0 && !(scheme == "http" && port == 80) && !(scheme == "https" && port == 443) {
		hostport = net.JoinHostPort(host, strconv.Itoa(port))
	}
	u := *r.URL
	u.Scheme, u.Host = scheme, hostport
	u.Path, u.RawPath = replacePath(r.URL.Path, rd.Path, match), ""
	return u.String()
}

// gatewayPort is the Gateway port a connection arrived on, nil for the
// Ingress ports.
func (t *Table) gatewayPort(dst netip.AddrPort) *gwPort {
	if !dst.IsValid() || t.gateways == nil {
		return nil
	}
	return t.gateways[netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())]
}

// vhosts are the port's virtual hosts.
func (gp *gwPort) vhosts() []*gwVHost {
	out := slices.Collect(maps.Values(gp.exact))
	out = append(out, gp.wild...)
	if gp.any != nil {
		out = append(out, gp.any)
	}
	return out
}
