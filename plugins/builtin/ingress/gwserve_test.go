package ingress

import (
	"net/http"
	"strings"
	"testing"
)

// TestMatchPrecedence: across routes and rules, an Exact path wins, then
// the longest prefix, a method, more headers, more query parameters, then
// the oldest route; a more specific hostname is chosen before any rule.
func TestMatchPrecedence(t *testing.T) {
	w, gw := gwWorld(t, gwHTTP, `kind: HTTPRoute
metadata: {name: a}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: root, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /foo}}]
    backendRefs: [{name: prefix-foo, port: 80}]
  - matches: [{path: {type: Exact, value: /foo}}]
    backendRefs: [{name: exact-foo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /foo/bar/}}]
    backendRefs: [{name: prefix-foo-bar, port: 80}]
`, `kind: HTTPRoute
metadata: {name: b}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /m}, method: POST}]
    backendRefs: [{name: method, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /m}, headers: [{name: x-one, value: "1"}]}]
    backendRefs: [{name: one-header, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /m}, headers: [{name: x-one, value: "1"}, {name: x-two, value: "2"}]}]
    backendRefs: [{name: two-headers, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /m}, queryParams: [{name: q, value: "v"}]}]
    backendRefs: [{name: query, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: newer-root, port: 80}]
`, `kind: HTTPRoute
metadata: {name: c}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [specific.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /only}}]
    backendRefs: [{name: specific, port: 80}]
`)
	tbl := Build(World{Service: w.Service, Slices: w.Slices, Gateway: &gw})
	for _, c := range []struct {
		method, host, target string
		header               http.Header
		want                 string
	}{
		{"GET", "x", "/", nil, "default/root"},
		{"GET", "x", "/foo", nil, "default/exact-foo"},
		{"GET", "x", "/foo/", nil, "default/prefix-foo"},
		{"GET", "x", "/foo/x", nil, "default/prefix-foo"},
		{"GET", "x", "/foobar", nil, "default/root"},
		{"GET", "x", "/foo/bar", nil, "default/prefix-foo-bar"},
		{"GET", "x", "/foo/bar/baz", nil, "default/prefix-foo-bar"},
		{"GET", "x", "/m", nil, "default/root"},
		{"POST", "x", "/m", http.Header{"X-One": {"1"}, "X-Two": {"2"}}, "default/method"},
		{"GET", "x", "/m", http.Header{"X-One": {"1"}, "X-Two": {"2"}}, "default/two-headers"},
		{"GET", "x", "/m", http.Header{"X-One": {"1"}}, "default/one-header"},
		{"GET", "x", "/m?q=v", http.Header{"X-One": {"1"}}, "default/one-header"},
		{"GET", "x", "/m?q=v", nil, "default/query"},
		{"GET", "x", "/m?q=w", nil, "default/root"},
		{"GET", "specific.example.com", "/only/x", nil, "default/specific"},
		{"GET", "specific.example.com", "/", nil, "404"},
	} {
		p := NewProxy(discard(), false, nil)
		p.Set(tbl)
		rec := serveReq(t, p, c.method, c.host, c.target, c.header, 80)
		got := rec.Header().Get("X-Backend")
		if rec.Code == http.StatusNotFound {
			got = "404"
		}
		if got != c.want {
			t.Errorf("%s %s%s %v went to %q (%d %s); want %q", c.method, c.host, c.target, c.header, got, rec.Code, rec.Body, c.want)
		}
	}
}

// TestFilters: header modifiers, redirects and rewrites.
func TestFilters(t *testing.T) {
	w, gw := gwWorld(t, gwHTTP, `kind: HTTPRoute
metadata: {name: f}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}, port: 8080}}]
  - matches: [{path: {type: PathPrefix, value: /rewrite}}]
    filters: [{type: URLRewrite, urlRewrite: {hostname: rewritten.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - {type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: X-Added, value: "yes"}]}}
    backendRefs: [{name: svc, port: 80}]
`)
	tbl := Build(World{Service: w.Service, Slices: w.Slices, Gateway: &gw})
	p := NewProxy(discard(), false, nil)
	p.Set(tbl)
	for _, c := range []struct {
		target   string
		code     int
		location string
		body     string
		header   string
	}{
		{"/redirect/x?y=1", 301, "https://example.org/redirect/x?y=1", "", ""},
		{"/moved/deep", 302, "http://x:8080/new/deep", "", ""},
		{"/rewrite/a/b", 200, "", "default/svc /a/b rewritten.example", ""},
		{"/rewrite", 200, "", "default/svc / rewritten.example", ""},
		{"/headers", 200, "", "default/svc /headers x", "yes"},
	} {
		rec := serveReq(t, p, "GET", "x", c.target, nil, 80)
		if rec.Code != c.code || rec.Header().Get("Location") != c.location || !strings.HasPrefix(rec.Body.String(), c.body) ||
			rec.Header().Get("X-Added") != c.header {
			t.Errorf("GET %s: %d Location %q X-Added %q body %q; want %d %q %q %q", c.target, rec.Code, rec.Header().Get("Location"),
				rec.Header().Get("X-Added"), rec.Body, c.code, c.location, c.header, c.body)
		}
	}
}

// TestWeights: backends share requests by weight; weight 0 gets none.
func TestWeights(t *testing.T) {
	w, gw := gwWorld(t, gwHTTP, `kind: HTTPRoute
metadata: {name: wt}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
  - backendRefs: [{name: three, port: 80, weight: 3}, {name: one, port: 80, weight: 1}, {name: none, port: 80, weight: 0}]
`)
	p := NewProxy(discard(), false, nil)
	p.Set(Build(World{Service: w.Service, Slices: w.Slices, Gateway: &gw}))
	got := map[string]int{}
	for range 40 {
		got[serveReq(t, p, "GET", "x", "/", nil, 80).Header().Get("X-Backend")]++
	}
	if got["default/three"] != 30 || got["default/one"] != 10 || len(got) != 2 {
		t.Errorf("40 requests went %v; want 30 to three, 10 to one", got)
	}
}
