// Package freshness keeps a controller from acting on an informer cache
// older than its own last write for an object: after writing (a pod created
// for a ReplicaSet, its status updated) the controller records the
// resourceVersion the API server returned, and it syncs that object again
// only once every informer it reads has caught up to that version. Acting
// on an older cache would undo or repeat its own work. This is what
// kube-controller-manager's stale-controller consistency guard does (beta,
// on by default since 1.36).
package freshness

import (
	"errors"
	"fmt"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// Cache is what the guard reads of an informer's store: the newest
// resourceVersion it has applied ("" when unknown).
type Cache interface {
	LastStoreSyncResourceVersion() string
}

// StaleError says that a cache has not yet seen a write the controller made.
type StaleError struct {
	Cache         string
	Read, Written string
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("the %s cache is at resourceVersion %s, older than this controller's write at %s", e.Cache, e.Read, e.Written)
}

// Guard remembers, per owner object, the newest write made on its behalf to
// each named cache's resource. It is safe for concurrent use.
type Guard struct {
	caches map[string]Cache

	mu     sync.Mutex
	owners map[string]*writes
}

type writes struct {
	uid types.UID
	rv  map[string]string // cache name -> newest written resourceVersion
}

// New returns a Guard over the named caches.
func New(caches map[string]Cache) *Guard {
	return &Guard{caches: caches, owners: map[string]*writes{}}
}

// Wrote records that a write for the owner key (uid) to the resource cached
// in cache produced resourceVersion rv.
func (g *Guard) Wrote(key string, uid types.UID, cache, rv string) {
	if rv == "" {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.owners[key]
	if w == nil || w.uid != uid {
		w = &writes{uid: uid, rv: map[string]string{}}
		g.owners[key] = w
	}
	if old, ok := w.rv[cache]; ok {
		if c, err := resourceversion.CompareResourceVersion(old, rv); err == nil && c >= 0 {
			return
		}
	}
	w.rv[cache] = rv
}

// WroteFor is Wrote for a write made on behalf of owner, keyed as its
// work queue keys it (namespace/name) with its UID.
func (g *Guard) WroteFor(owner metav1.Object, cache, rv string) {
	key := owner.GetName()
	if ns := owner.GetNamespace(); ns != "" {
		key = ns + "/" + key
	}
	g.Wrote(key, owner.GetUID(), cache, rv)
}

// Ready returns nil once every cache has seen the writes recorded for key
// (and then forgets them), or a *StaleError. Caches that cannot tell their
// version, and versions that do not compare, never hold a sync back.
func (g *Guard) Ready(key string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.owners[key]
	if w == nil {
		return nil
	}
	for name, wrote := range w.rv {
		c := g.caches[name]
		if c == nil {
			continue
		}
		read := c.LastStoreSyncResourceVersion()
		if read == "" {
			continue
		}
		if cmp, err := resourceversion.CompareResourceVersion(wrote, read); err == nil && cmp > 0 {
			return &StaleError{Cache: name, Read: read, Written: wrote}
		}
	}
	delete(g.owners, key)
	return nil
}

// IsStale reports whether err is (or wraps) a *StaleError: the guard
// holding a sync back while the controller writes faster than its watches
// deliver, part of normal operation, not a failure to report.
func IsStale(err error) bool {
	var s *StaleError
	return errors.As(err, &s)
}

// Forget drops what was recorded for key (the owner was deleted).
func (g *Guard) Forget(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.owners, key)
}
