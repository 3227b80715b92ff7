package kubeletapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Cache lifetimes of review answers, kubelet's webhook defaults.
const (
	tokenTTL   = 2 * time.Minute
	allowedTTL = 5 * time.Minute
	deniedTTL  = 30 * time.Second
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

	mu      sync.Mutex
	tokens  map[[32]byte]cached[user]
	answers map[string]cached[answer]
}

type cached[T any] struct {
	v       T
	expires time.Time
}

type answer struct {
	allowed bool
	reason  string
}

func newAuthorizer(client kubernetes.Interface, node string) *authorizer {
	return &authorizer{client: client, node: node, tokens: map[[32]byte]cached[user]{}, answers: map[string]cached[answer]{}}
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
	a.mu.Lock()
	if c, ok := a.tokens[key]; ok && time.Now().Before(c.expires) {
		a.mu.Unlock()
		return c.v, nil
	}
	a.mu.Unlock()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(r.Context(), &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil || !tr.Status.Authenticated {
		return user{}, errUnauthenticated
	}
	u := user{name: tr.Status.User.Username, uid: tr.Status.User.UID, groups: tr.Status.User.Groups, extra: map[string]authzv1.ExtraValue{}}
	for k, v := range tr.Status.User.Extra {
		u.extra[k] = authzv1.ExtraValue(v)
	}
	a.mu.Lock()
	a.tokens[key] = cached[user]{v: u, expires: time.Now().Add(tokenTTL)}
	a.mu.Unlock()
	return u, nil
}

// authorize asks the API server whether u may verb the node's subresource.
func (a *authorizer) authorize(ctx context.Context, u user, verb, subresource string) (bool, string, error) {
	key := u.name + "\x00" + strings.Join(u.groups, ",") + "\x00" + verb + "\x00" + subresource
	a.mu.Lock()
	if c, ok := a.answers[key]; ok && time.Now().Before(c.expires) {
		a.mu.Unlock()
		return c.v.allowed, c.v.reason, nil
	}
	a.mu.Unlock()
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
	a.mu.Lock()
	a.answers[key] = cached[answer]{v: ans, expires: time.Now().Add(ttl)}
	a.mu.Unlock()
	return ans.allowed, ans.reason, nil
}
