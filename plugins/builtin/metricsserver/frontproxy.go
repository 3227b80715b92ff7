package metricsserver

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	authzv1 "k8s.io/api/authorization/v1"
	v1 "k8s.io/api/core/v1"
)

// The ConfigMap in which kube-apiserver publishes how it authenticates
// itself to aggregated API servers (its front-proxy client certificate's
// CA and names, and the headers carrying the user).
const (
	authConfigMapNamespace = "kube-system"
	authConfigMapName      = "extension-apiserver-authentication"
)

// proxyUser is the user kube-apiserver forwards a request for.
type proxyUser struct {
	name   string
	uid    string
	groups []string
	extra  map[string]authzv1.ExtraValue
}

// frontProxy authenticates requests kube-apiserver's aggregator forwards:
// a client certificate of the request-header CA with an allowed name,
// carrying the user in headers, as every aggregated API server does.
type frontProxy struct {
	mu  sync.RWMutex
	cfg *requestHeader
}

// requestHeader is the parsed ConfigMap.
type requestHeader struct {
	roots        *x509.CertPool
	allowedNames []string
	userHeaders  []string
	uidHeaders   []string
	groupHeaders []string
	extraPrefix  []string
}

var errNoFrontProxy = errors.New("kube-apiserver has not published its front-proxy CA (kube-system/extension-apiserver-authentication) yet")

// set takes a new version of the ConfigMap.
func (f *frontProxy) set(cm *v1.ConfigMap) error {
	rh, err := parseRequestHeader(cm)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.cfg = rh
	f.mu.Unlock()
	return nil
}

func parseRequestHeader(cm *v1.ConfigMap) (*requestHeader, error) {
	ca := cm.Data["requestheader-client-ca-file"]
	if ca == "" {
		return nil, fmt.Errorf("%s/%s has no requestheader-client-ca-file", cm.Namespace, cm.Name)
	}
	rh := &requestHeader{roots: x509.NewCertPool()}
	if !rh.roots.AppendCertsFromPEM([]byte(ca)) {
		return nil, fmt.Errorf("%s/%s: requestheader-client-ca-file holds no PEM certificate", cm.Namespace, cm.Name)
	}
	lists := []struct {
		key string
		to  *[]string
	}{
		{"requestheader-allowed-names", &rh.allowedNames},
		{"requestheader-username-headers", &rh.userHeaders},
		{"requestheader-uid-headers", &rh.uidHeaders},
		{"requestheader-group-headers", &rh.groupHeaders},
		{"requestheader-extra-headers-prefix", &rh.extraPrefix},
	}
	for _, l := range lists {
		if v := cm.Data[l.key]; v != "" {
			if err := json.Unmarshal([]byte(v), l.to); err != nil {
				return nil, fmt.Errorf("%s/%s: %s is not a JSON list: %w", cm.Namespace, cm.Name, l.key, err)
			}
		}
	}
	return rh, nil
}

var errUnauthenticated = errors.New("not a request of kube-apiserver's front proxy")

// authenticate verifies the client certificate and reads the user.
func (f *frontProxy) authenticate(r *http.Request) (proxyUser, error) {
	f.mu.RLock()
	rh := f.cfg
	f.mu.RUnlock()
	if rh == nil {
		return proxyUser{}, errNoFrontProxy
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return proxyUser{}, errUnauthenticated
	}
	certs := r.TLS.PeerCertificates
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: rh.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return proxyUser{}, errUnauthenticated
	}
	if len(rh.allowedNames) > 0 && !slices.Contains(rh.allowedNames, certs[0].Subject.CommonName) {
		return proxyUser{}, errUnauthenticated
	}
	u := proxyUser{name: firstHeader(r, rh.userHeaders), uid: firstHeader(r, rh.uidHeaders), extra: map[string]authzv1.ExtraValue{}}
	if u.name == "" {
		return proxyUser{}, errUnauthenticated
	}
	for _, h := range rh.groupHeaders {
		u.groups = append(u.groups, r.Header.Values(h)...)
	}
	for _, prefix := range rh.extraPrefix {
		for h, vs := range r.Header {
			k, ok := strings.CutPrefix(strings.ToLower(h), strings.ToLower(prefix))
			if !ok || k == "" {
				continue
			}
			// Keys travel percent-encoded (a header name cannot hold
			// every character a key may).
			if dec, err := url.PathUnescape(k); err == nil {
				k = dec
			}
			u.extra[k] = append(u.extra[k], vs...)
		}
	}
	return u, nil
}

func firstHeader(r *http.Request, names []string) string {
	for _, h := range names {
		if v := r.Header.Get(h); v != "" {
			return v
		}
	}
	return ""
}
