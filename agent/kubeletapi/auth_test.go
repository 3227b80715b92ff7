package kubeletapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// reviewer is a fake API server answering token and access reviews and
// counting them.
type reviewer struct {
	client         *fake.Clientset
	tokenReviews   int
	accessReviews  int
	down           bool
	goodToken      string
	allowedSubject string
}

func newReviewer() *reviewer {
	r := &reviewer{client: fake.NewSimpleClientset(), goodToken: "good", allowedSubject: "admin"}
	r.client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.tokenReviews++
		if r.down {
			return true, nil, errors.New("connection refused")
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == r.goodToken {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "admin"}}
		}
		return true, tr, nil
	})
	r.client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r.accessReviews++
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		sar.Status.Allowed = sar.Spec.User == r.allowedSubject
		return true, sar, nil
	})
	return r
}

func bearer(tok string) *http.Request {
	r, _ := http.NewRequest("GET", "https://node/pods", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func TestTokenReviewCache(t *testing.T) {
	rv := newReviewer()
	clock := clockwork.NewFakeClock()
	a := newAuthorizer(rv.client, "n1", clock)
	steps := []struct {
		advance time.Duration
		token   string
		ok      bool
		reviews int // total after the step
	}{
		{0, "good", true, 1},
		{time.Minute, "good", true, 1},               // cached
		{time.Minute + time.Second, "good", true, 2}, // 2 min passed: asked again
		{0, "bad", false, 3},
		{29 * time.Second, "bad", false, 3}, // a refusal is cached too...
		{2 * time.Second, "bad", false, 4},  // ...for 30 s only
	}
	for i, s := range steps {
		clock.Advance(s.advance)
		_, err := a.authenticate(bearer(s.token))
		if (err == nil) != s.ok || rv.tokenReviews != s.reviews {
			t.Fatalf("step %d (%s): err=%v reviews=%d, want ok=%v reviews=%d", i, s.token, err, rv.tokenReviews, s.ok, s.reviews)
		}
	}
	// An unanswered review is not cached: the next request asks again.
	rv.down = true
	for i := 0; i < 2; i++ {
		if _, err := a.authenticate(bearer("other")); err == nil {
			t.Fatal("a token the API server could not review was accepted")
		}
	}
	if rv.tokenReviews != 6 {
		t.Fatalf("%d reviews, want 6 (failed reviews are not cached)", rv.tokenReviews)
	}
}

func TestTokenCacheIsBounded(t *testing.T) {
	rv := newReviewer()
	a := newAuthorizer(rv.client, "n1", clockwork.NewFakeClock())
	if _, err := a.authenticate(bearer("good")); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < cacheMaxEntries; i++ {
		_, _ = a.authenticate(bearer("spray-" + strconv.Itoa(i)))
	}
	if n := len(a.tokens.Keys()); n > cacheMaxEntries {
		t.Fatalf("token cache holds %d entries, bound %d", n, cacheMaxEntries)
	}
	before := rv.tokenReviews
	if _, err := a.authenticate(bearer("good")); err != nil {
		t.Fatal(err)
	}
	if rv.tokenReviews != before+1 {
		t.Fatal("the least recently used token was not evicted")
	}
}

func TestAccessReviewCache(t *testing.T) {
	rv := newReviewer()
	clock := clockwork.NewFakeClock()
	a := newAuthorizer(rv.client, "n1", clock)
	ctx := context.Background()
	admin, guest := user{name: "admin"}, user{name: "guest"}
	check := func(u user, want bool, reviews int) {
		t.Helper()
		ok, _, err := a.authorize(ctx, u, "get", "log")
		if err != nil || ok != want || rv.accessReviews != reviews {
			t.Fatalf("%s: allowed=%v err=%v reviews=%d, want %v %d", u.name, ok, err, rv.accessReviews, want, reviews)
		}
	}
	check(admin, true, 1)
	check(guest, false, 2)
	clock.Advance(29 * time.Second)
	check(admin, true, 2)
	check(guest, false, 2)
	clock.Advance(2 * time.Second) // a denial lives 30 s
	check(guest, false, 3)
	check(admin, true, 3)
	clock.Advance(4*time.Minute + 30*time.Second) // an allowance 5 min
	check(admin, true, 4)
}
