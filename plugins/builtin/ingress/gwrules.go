package ingress

import (
	"cmp"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"

	networkingv1 "k8s.io/api/networking/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// gwRule is one match of one HTTPRoute rule as served: a rule with n
// matches is n gwRules sharing filters and backends.
type gwRule struct {
	// route is the metrics unit and what the request matched.
	route   *Route
	match   gwMatch
	rank    ruleRank
	filters ruleFilters
	// backends are the weighted backendRefs; a request picks one by
	// weight (smooth round robin over the total).
	backends []weightedBackend
	total    int64
	// problem answers every request with 500 (no backendRefs, or every
	// weight zero).
	problem string
	next    *atomic.Uint64
}

type weightedBackend struct {
	b      *Backend
	weight int64
	// invalid: a request picking it gets 500, as the spec asks of
	// references that do not resolve.
	invalid bool
}

// pick chooses a backend by weight.
func (r *gwRule) pick() weightedBackend {
	n := int64(r.next.Add(1) % uint64(r.total))
	for _, wb := range r.backends {
		if n < wb.weight {
			return wb
		}
		n -= wb.weight
	}
	return r.backends[len(r.backends)-1]
}

// gwMatch is one HTTPRouteMatch: every part present must match.
type gwMatch struct {
	pathType gatewayv1.PathMatchType
	path     string
	pathRE   *regexp.Regexp
	headers  []valueMatch
	query    []valueMatch
	method   string
}

type valueMatch struct {
	name, value string
	re          *regexp.Regexp
}

func (v valueMatch) matches(got string, present bool) bool {
	if v.re != nil {
		return present && v.re.MatchString(got)
	}
	return present && got == v.value
}

func (m *gwMatch) matches(r *http.Request) bool {
	switch m.pathType {
	case gatewayv1.PathMatchExact:
		if r.URL.Path != m.path {
			return false
		}
	case gatewayv1.PathMatchRegularExpression:
		if !m.pathRE.MatchString(r.URL.Path) {
			return false
		}
	default:
		if !prefixMatches(m.path, r.URL.Path) {
			return false
		}
	}
	if m.method != "" && r.Method != m.method {
		return false
	}
	for _, h := range m.headers {
		vals := r.Header.Values(h.name)
		if !h.matches(strings.Join(vals, ","), len(vals) > 0) {
			return false
		}
	}
	if len(m.query) > 0 {
		q := r.URL.Query()
		for _, qm := range m.query {
			vals, ok := q[qm.name]
			got := ""
			if ok {
				got = vals[0]
			}
			if !qm.matches(got, ok) {
				return false
			}
		}
	}
	return true
}

// ruleRank orders matches by the Gateway API's precedence: an Exact path,
// then the longest prefix, a method, the most header matches, the most
// query matches, then the oldest route, then its namespace/name, then the
// rule's and the match's order.
type ruleRank struct {
	pathKind              int // 0 Exact, 1 PathPrefix, 2 RegularExpression
	pathLen               int
	method                bool
	headers, query        int
	created               int64
	namespace, name       string
	ruleIndex, matchIndex int
}

func compareRank(a, b ruleRank) int {
	if c := cmp.Compare(a.pathKind, b.pathKind); c != 0 {
		return c
	}
	if c := cmp.Compare(b.pathLen, a.pathLen); c != 0 {
		return c
	}
	if a.method != b.method {
		if a.method {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(b.headers, a.headers), cmp.Compare(b.query, a.query), cmp.Compare(a.created, b.created),
		cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name),
		cmp.Compare(a.ruleIndex, b.ruleIndex), cmp.Compare(a.matchIndex, b.matchIndex))
}

// compileMatch compiles one match; an error names what is unsupported.
func compileMatch(m gatewayv1.HTTPRouteMatch) (gwMatch, error) {
	g := gwMatch{pathType: gatewayv1.PathMatchPathPrefix, path: "/"}
	if m.Path != nil {
		if m.Path.Type != nil {
			g.pathType = *m.Path.Type
		}
		if m.Path.Value != nil {
			g.path = *m.Path.Value
		}
	}
	switch g.pathType {
	case gatewayv1.PathMatchPathPrefix:
		g.path = strings.TrimRight(g.path, "/")
	case gatewayv1.PathMatchRegularExpression:
		re, err := regexp.Compile("^(?:" + g.path + ")$")
		if err != nil {
			return g, fmt.Errorf("path regular expression %q: %w", g.path, err)
		}
		g.pathRE = re
	}
	if m.Method != nil {
		g.method = string(*m.Method)
	}
	for _, h := range m.Headers {
		v, err := valueMatcher(string(h.Name), h.Value, h.Type != nil && *h.Type == gatewayv1.HeaderMatchRegularExpression)
		if err != nil {
			return g, err
		}
		v.name = http.CanonicalHeaderKey(v.name)
		g.headers = append(g.headers, v)
	}
	for _, q := range m.QueryParams {
		v, err := valueMatcher(string(q.Name), q.Value, q.Type != nil && *q.Type == gatewayv1.QueryParamMatchRegularExpression)
		if err != nil {
			return g, err
		}
		g.query = append(g.query, v)
	}
	return g, nil
}

func valueMatcher(name, value string, isRE bool) (valueMatch, error) {
	v := valueMatch{name: name, value: value}
	if isRE {
		re, err := regexp.Compile(value)
		if err != nil {
			return v, fmt.Errorf("match of %s: regular expression %q: %w", name, value, err)
		}
		v.re = re
	}
	return v, nil
}

func rankOf(r *gatewayv1.HTTPRoute, g gwMatch, ri, mi int) ruleRank {
	kind := map[gatewayv1.PathMatchType]int{gatewayv1.PathMatchExact: 0, gatewayv1.PathMatchPathPrefix: 1, gatewayv1.PathMatchRegularExpression: 2}[g.pathType]
	return ruleRank{pathKind: kind, pathLen: len(g.path), method: g.method != "", headers: len(g.headers), query: len(g.query),
		created: r.CreationTimestamp.UnixNano(), namespace: r.Namespace, name: r.Name, ruleIndex: ri, matchIndex: mi}
}

// compileRules compiles a route's rules. unsupported is its Accepted
// condition when it uses something the plugin does not implement;
// resolved is its ResolvedRefs condition.
func compileRules(w GatewayWorld, r *gatewayv1.HTTPRoute, backends *backendSet) (rules []*gwRule, unsupported, resolved condition) {
	unsupported = condition{ok: true}
	resolved = condition{typ: string(gatewayv1.RouteConditionResolvedRefs), ok: true, reason: string(gatewayv1.RouteReasonResolvedRefs)}
	for ri, rule := range r.Spec.Rules {
		filters, err := compileFilters(rule)
		bs, total, refCond := ruleBackends(w, r, rule, backends)
		if !refCond.ok && resolved.ok {
			resolved = refCond
		}
		matches := rule.Matches
		if len(matches) == 0 {
			matches = []gatewayv1.HTTPRouteMatch{{}}
		}
		next := &atomic.Uint64{}
		for mi, m := range matches {
			g, merr := compileMatch(m)
			if err == nil {
				err = merr
			}
			gr := &gwRule{match: g, rank: rankOf(r, g, ri, mi), filters: filters, backends: bs, total: total, next: next,
				route: &Route{Namespace: r.Namespace, Ingress: "HTTPRoute/" + r.Name, Host: routeHosts(r), Path: fmt.Sprintf("rules[%d].matches[%d]", ri, mi)}}
			if total == 0 && filters.redirect == nil {
				gr.problem = fmt.Sprintf("HTTPRoute %s/%s rules[%d] has no backendRefs with a weight", r.Namespace, r.Name, ri)
			}
			rules = append(rules, gr)
		}
		if err != nil && unsupported.ok {
			unsupported = condition{typ: string(gatewayv1.RouteConditionAccepted), reason: string(gatewayv1.RouteReasonUnsupportedValue),
				msg: fmt.Sprintf("rules[%d]: %v", ri, err)}
		}
	}
	return rules, unsupported, resolved
}

func routeHosts(r *gatewayv1.HTTPRoute) string {
	if len(r.Spec.Hostnames) == 0 {
		return "*"
	}
	hs := make([]string, len(r.Spec.Hostnames))
	for i, h := range r.Spec.Hostnames {
		hs[i] = string(h)
	}
	return strings.Join(hs, ",")
}

// ruleBackends resolves a rule's backendRefs: core Services by port, in
// another namespace only with a ReferenceGrant there.
func ruleBackends(w GatewayWorld, r *gatewayv1.HTTPRoute, rule gatewayv1.HTTPRouteRule, backends *backendSet) ([]weightedBackend, int64, condition) {
	cond := condition{ok: true}
	fail := func(reason gatewayv1.RouteConditionReason, msg string) {
		if cond.ok {
			cond = condition{typ: string(gatewayv1.RouteConditionResolvedRefs), reason: string(reason), msg: msg}
		}
	}
	var out []weightedBackend
	var total int64
	for _, br := range rule.BackendRefs {
		weight := int64(1)
		if br.Weight != nil {
			weight = int64(*br.Weight)
		}
		ns := r.Namespace
		if br.Namespace != nil {
			ns = string(*br.Namespace)
		}
		name := ns + "/" + string(br.Name)
		wb := weightedBackend{weight: weight}
		switch {
		case (br.Group != nil && *br.Group != "") || (br.Kind != nil && *br.Kind != "Service"):
			fail(gatewayv1.RouteReasonInvalidKind, fmt.Sprintf("backendRef %s: only core Services are supported as backends", name))
			wb.invalid, wb.b = true, &Backend{Name: name, Problem: "backendRef " + name + " is not a Service"}
		case ns != r.Namespace && !granted(w.Grants, gatewayv1.GroupName, "HTTPRoute", r.Namespace, "", "Service", ns, string(br.Name)):
			fail(gatewayv1.RouteReasonRefNotPermitted, fmt.Sprintf("backendRef %s is in another namespace and no ReferenceGrant there allows it", name))
			wb.invalid, wb.b = true, &Backend{Name: name, Problem: "backendRef " + name + " is not permitted"}
		case br.Port == nil:
			fail(gatewayv1.RouteReasonUnsupportedValue, fmt.Sprintf("backendRef %s: a Service backend needs a port", name))
			wb.invalid, wb.b = true, &Backend{Name: name, Problem: "backendRef " + name + " has no port"}
		default:
			wb.b = backends.get(ns, networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: string(br.Name), Port: networkingv1.ServiceBackendPort{Number: int32(*br.Port)}}})
			if wb.b.Problem != "" {
				fail(gatewayv1.RouteReasonBackendNotFound, wb.b.Problem)
				wb.invalid = true
			}
		}
		if weight > 0 {
			out = append(out, wb)
			total += weight
		}
	}
	return out, total, cond
}

// backendSet resolves each Service port once per table.
type backendSet struct {
	w        World
	m        map[string]*Backend
	problems []string
}

func newBackendSet(w World) *backendSet { return &backendSet{w: w, m: map[string]*Backend{}} }

func (s *backendSet) get(ns string, ib networkingv1.IngressBackend) *Backend {
	key := ns + "/" + backendKey(ib)
	if b, ok := s.m[key]; ok {
		return b
	}
	var b *Backend
	if s.w.Service == nil {
		b = &Backend{Name: key, Problem: "backend " + key + ": no Service lookup"}
	} else {
		b = resolve(s.w, ns, ib)
	}
	s.m[key] = b
	if b.Problem != "" {
		s.problems = append(s.problems, b.Problem)
	}
	return b
}
