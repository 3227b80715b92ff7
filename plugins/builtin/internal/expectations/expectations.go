// Package expectations remembers, per controller object, the pod creations
// and deletions a controller has asked for but not yet seen in its informer
// cache. Until they are seen (or the record expires) the controller does
// not act on the object again, so a slow watch never makes it create or
// delete the same replicas twice.
package expectations

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// DefaultTTL bounds how long a controller waits for events it expected: if
// a watch drops one, the controller acts again after this long anyway.
const DefaultTTL = 5 * time.Minute

// Store holds the expectations of every object of one controller, keyed by
// the object's namespace/name. It is safe for concurrent use.
type Store struct {
	clock clock.PassiveClock
	ttl   time.Duration

	mu sync.Mutex
	m  map[string]*record
}

type record struct {
	adds, dels int64
	// deleting holds the keys of pods whose deletion was asked for: a pod
	// is seen deleted once when its deletionTimestamp appears and again when
	// it disappears, and must count once.
	deleting map[string]bool
	since    time.Time
}

// New returns an empty Store whose records expire after ttl on clk.
func New(clk clock.PassiveClock, ttl time.Duration) *Store {
	return &Store{clock: clk, ttl: ttl, m: map[string]*record{}}
}

// Satisfied reports whether the controller may act on key: nothing is
// expected, everything expected was seen, or the record expired.
func (s *Store) Satisfied(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.m[key]
	if !ok {
		return true
	}
	return (r.adds <= 0 && r.dels <= 0) || s.clock.Since(r.since) > s.ttl
}

// Pending returns the creations and deletions still expected for key.
func (s *Store) Pending(key string) (adds, dels int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.m[key]; ok {
		return r.adds, r.dels
	}
	return 0, 0
}

// ExpectCreations replaces key's expectations with n creations.
func (s *Store) ExpectCreations(key string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = &record{adds: int64(n), since: s.clock.Now()}
}

// ExpectDeletions replaces key's expectations with the deletion of the
// pods named by podKeys (namespace/name).
func (s *Store) ExpectDeletions(key string, podKeys []string) {
	deleting := make(map[string]bool, len(podKeys))
	for _, k := range podKeys {
		deleting[k] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = &record{dels: int64(len(deleting)), deleting: deleting, since: s.clock.Now()}
}

// CreationObserved records that one expected creation for key happened, or
// will never happen (the create failed or was skipped).
func (s *Store) CreationObserved(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.m[key]; ok {
		r.adds--
	}
}

// DeletionObserved records that the pod podKey, if key expected its
// deletion, is gone or going; later observations of the same pod are
// ignored.
func (s *Store) DeletionObserved(key, podKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.m[key]; ok && r.deleting[podKey] {
		delete(r.deleting, podKey)
		r.dels--
	}
}

// Delete forgets key, so an object re-created under the same name starts
// clean.
func (s *Store) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// Expect replaces key's expectations with n creations and the deletion of
// the pods named by podKeys, for a controller that does both in one sync.
func (s *Store) Expect(key string, n int, podKeys []string) {
	deleting := make(map[string]bool, len(podKeys))
	for _, k := range podKeys {
		deleting[k] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = &record{adds: int64(n), dels: int64(len(deleting)), deleting: deleting, since: s.clock.Now()}
}
