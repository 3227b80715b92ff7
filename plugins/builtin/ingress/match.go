package ingress

import (
	"slices"
	"strings"
)

// pathRoutes are one host's paths: exact paths by value, prefixes longest
// first. A prefix is kept without its trailing slash ("" is "/", every
// path), since Prefix matching ignores a trailing slash.
type pathRoutes struct {
	exact    map[string]*Route
	prefixes []prefixRoute
}

type prefixRoute struct {
	path  string
	route *Route
}

func newPathRoutes() *pathRoutes { return &pathRoutes{exact: map[string]*Route{}} }

// add registers a path unless an earlier one of the same type holds it (the
// oldest Ingress wins a conflict), and reports whether it did. exact is
// pathType Exact; Prefix and ImplementationSpecific are prefixes.
func (p *pathRoutes) add(path string, exact bool, r *Route) bool {
	if exact {
		if _, ok := p.exact[path]; ok {
			return false
		}
		p.exact[path] = r
		return true
	}
	norm := strings.TrimRight(path, "/")
	for _, pr := range p.prefixes {
		if pr.path == norm {
			return false
		}
	}
	p.prefixes = append(p.prefixes, prefixRoute{path: norm, route: r})
	return true
}

// seal orders the prefixes longest first, so the first match is the
// longest.
func (p *pathRoutes) seal() {
	slices.SortStableFunc(p.prefixes, func(a, b prefixRoute) int { return len(b.path) - len(a.path) })
}

// match finds the route of a request path. An Exact match is the whole
// request path, so it is at least as long as any matching prefix and wins
// (also on a tie, as the Ingress rules ask). A prefix matches element-wise
// on '/': "/foo" matches "/foo" and "/foo/bar", never "/foobar".
func (p *pathRoutes) match(path string) *Route {
	if r, ok := p.exact[path]; ok {
		return r
	}
	for _, pr := range p.prefixes {
		if prefixMatches(pr.path, path) {
			return pr.route
		}
	}
	return nil
}

func prefixMatches(prefix, path string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// hostRoutes picks the paths of a request's host: an exact host first,
// then a single-label wildcard ("*.foo.com" holds "bar.foo.com", not
// "foo.com" nor "baz.bar.foo.com"), then the rules without a host.
type hostRoutes struct {
	exact    map[string]*pathRoutes
	wildcard map[string]*pathRoutes // by the suffix after "*."
	any      *pathRoutes
}

func (h *hostRoutes) forRule(host string) *pathRoutes {
	var m map[string]*pathRoutes
	key := host
	switch {
	case host == "":
		if h.any == nil {
			h.any = newPathRoutes()
		}
		return h.any
	case strings.HasPrefix(host, "*."):
		m, key = h.wildcard, host[2:]
	default:
		m = h.exact
	}
	if m[key] == nil {
		m[key] = newPathRoutes()
	}
	return m[key]
}

func (h *hostRoutes) lookup(host string) *pathRoutes {
	if p, ok := h.exact[host]; ok {
		return p
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if p, ok := h.wildcard[host[i+1:]]; ok {
			return p
		}
	}
	return h.any
}

// requestHost is the Host header without a port, lower case, without a
// trailing dot.
func requestHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
