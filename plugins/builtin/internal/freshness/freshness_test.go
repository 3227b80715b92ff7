package freshness

import (
	"errors"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type fakeCache struct{ rv string }

func (f *fakeCache) LastStoreSyncResourceVersion() string { return f.rv }

func TestGuardWaitsForTheCacheToSeeOurWrites(t *testing.T) {
	pods := &fakeCache{rv: "100"}
	g := New(map[string]Cache{"pods": pods})
	if err := g.Ready("ns/a"); err != nil {
		t.Fatalf("nothing written: %v", err)
	}
	g.Wrote("ns/a", "uid-a", "pods", "105")
	g.Wrote("ns/a", "uid-a", "pods", "103") // older: the newest write counts
	var stale *StaleError
	if err := g.Ready("ns/a"); !errors.As(err, &stale) || stale.Written != "105" || stale.Read != "100" {
		t.Fatalf("cache behind our write: err = %v", err)
	}
	if err := g.Ready("ns/b"); err != nil {
		t.Errorf("another owner is held back: %v", err)
	}
	pods.rv = "105"
	if err := g.Ready("ns/a"); err != nil {
		t.Fatalf("cache caught up: %v", err)
	}
	pods.rv = "90" // a relist from an older server: the record was consumed
	if err := g.Ready("ns/a"); err != nil {
		t.Errorf("writes seen once are forgotten: %v", err)
	}
}

func TestGuardForgetsAReplacedOwnersWrites(t *testing.T) {
	pods := &fakeCache{rv: "1"}
	g := New(map[string]Cache{"pods": pods})
	g.Wrote("ns/a", "old-uid", "pods", "50")
	g.Wrote("ns/a", "new-uid", "pods", "2")
	if err := g.Ready("ns/a"); err == nil || err.(*StaleError).Written != "2" {
		t.Errorf("err = %v, want stale at the new owner's write 2", err)
	}
	g.Forget("ns/a")
	if err := g.Ready("ns/a"); err != nil {
		t.Errorf("after Forget: %v", err)
	}
}

func TestGuardNeverHoldsBackOnUnknownVersions(t *testing.T) {
	g := New(map[string]Cache{"pods": &fakeCache{rv: ""}, "odd": &fakeCache{rv: "not-a-number"}})
	g.Wrote("ns/a", "u", "pods", "5")
	g.Wrote("ns/a", "u", "odd", "7")
	g.Wrote("ns/a", "u", "unwatched", "9")
	if err := g.Ready("ns/a"); err != nil {
		t.Errorf("err = %v", err)
	}
}

// WroteFor keys a write as the work queue keys its owner.
func TestWroteForKeysByOwner(t *testing.T) {
	g := New(map[string]Cache{"pods": &fakeCache{rv: "1"}})
	g.WroteFor(&metav1.ObjectMeta{Namespace: "ns", Name: "a", UID: "uid-a"}, "pods", "7")
	g.WroteFor(&metav1.ObjectMeta{Name: "cluster-wide", UID: "uid-c"}, "pods", "8")
	for _, key := range []string{"ns/a", "cluster-wide"} {
		if err := g.Ready(key); !IsStale(err) {
			t.Errorf("Ready(%q) = %v, want a StaleError", key, err)
		}
	}
}
