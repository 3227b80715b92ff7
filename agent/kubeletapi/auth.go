package kubeletapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/client-go/kubernetes"
)

// Cache lifetimes of review answers, kubelet's webhook defaults: a refused
// token or request is asked again sooner than an accepted one.
const (
	tokenTTL        = 2 * time.Minute
	badTokenTTL     = 30 * time.Second
	allowedTTL      = 5 * time.Minute
	deniedTTL       = 30 * time.Second
	cacheMaxEntries = 4096 // per cache; the least recently used go first
)

type user struct {
	name   string
	uid    string
	groups []string
	extra  map[string]authzv1.ExtraValue
}

// authorizer authenticates and authorizes kubelet API requests, caching the
// API server's answers.
type authorizer struct {
	client kubernetes.Interface
	node   string

	// tokens maps a token's SHA-256 to its review (a user, or
	// errUnauthenticated); answers maps a request's attributes to the
	// access review's answer. Both expire entries and stay bounded, so a
	// client spraying tokens can neither grow the agent nor make every
	// request a TokenReview.
	tokens  *cache.LRUExpireCache
	answers *cache.LRUExpireCache
}

type tokenReview struct {
	u  user
	ok bool
}

type answer struct {
	allowed bool
	reason  string
}

func newAuthorizer(client kubernetes.Interface, node string, clock cache.Clock) *authorizer {
	return &authorizer{
		client:  client,
		node:    node,
		tokens:  cache.NewLRUExpireCacheWithClock(cacheMaxEntries, clock),
		answers: cache.NewLRUExpireCacheWithClock(cacheMaxEntries, clock),
	}
}

var errUnauthenticated = errors.New("unauthenticated")

// authenticate identifies the client: by a certificate of the cluster CA
// (verified by TLS), else by a bearer token the API server reviews.
func (a *authorizer) authenticate(r *http.Request) (user, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		c := r.TLS.VerifiedChains[0][0]
		return user{name: c.Subject.CommonName, groups: append([]string{}, c.Subject.Organization...)}, nil
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return user{}, errUnauthenticated
	}
	key := sha256.Sum256([]byte(tok))
	if c, ok := a.tokens.Get(key); ok {
		if r := c.(tokenReview); r.ok {
			return r.u, nil
		}
		return user{}, errUnauthenticated
	}
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(r.Context(), &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil {
		// The API server did not answer: nothing is known of the token,
		// so nothing is cached.
		return user{}, errUnauthenticated
	}
	if !tr.Status.Authenticated {
		a.tokens.Add(key, tokenReview{}, badTokenTTL)
		return user{}, errUnauthenticated
	}
	u := user{name: tr.Status.User.Username, uid: tr.Status.User.UID, groups: tr.Status.User.Groups, extra: map[string]authzv1.ExtraValue{}}
	for k, v := range tr.Status.User.Extra {
		u.extra[k] = authzv1.ExtraValue(v)
	}
	a.tokens.Add(key, tokenReview{u: u, ok: true}, tokenTTL)
	return u, nil
}

// authorize asks the API server whether u may verb the node's subresource.
func (a *authorizer) authorize(ctx context.Context, u user, verb, subresource string) (bool, string, error) {
	key := u.name + "\x00" + strings.Join(u.groups, ",") + "\x00" + verb + "\x00" + subresource
	if c, ok := a.answers.Get(key); ok {
		ans := c.(answer)
		return ans.allowed, ans.reason, nil
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.name, UID: u.uid, Groups: u.groups, Extra: u.extra,
		ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Resource: "nodes", Subresource: subresource, Name: a.node},
	}}
	resp, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", err
	}
	ans := answer{allowed: resp.Status.Allowed, reason: resp.Status.Reason}
	ttl := deniedTTL
	if ans.allowed {
		ttl = allowedTTL
	}
	a.answers.Add(key, ans, ttl)
	return ans.allowed, ans.reason, nil
}
