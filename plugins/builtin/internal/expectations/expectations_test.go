package expectations

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestExpectations(t *testing.T) {
	const key = "ns/rs"
	for _, tc := range []struct {
		name string
		do   func(s *Store, clk *clocktesting.FakeClock)
		want bool
	}{
		{"nothing expected", func(*Store, *clocktesting.FakeClock) {}, true},
		{"creations pending", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectCreations(key, 2)
			s.CreationObserved(key)
		}, false},
		{"creations all seen", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectCreations(key, 2)
			s.CreationObserved(key)
			s.CreationObserved(key)
		}, true},
		{"deletions pending", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectDeletions(key, []string{"ns/a", "ns/b"})
			s.DeletionObserved(key, "ns/a")
		}, false},
		{"a pod seen deleted twice counts once", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectDeletions(key, []string{"ns/a", "ns/b"})
			s.DeletionObserved(key, "ns/a")
			s.DeletionObserved(key, "ns/a")
		}, false},
		{"an unexpected deletion does not count", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectDeletions(key, []string{"ns/a"})
			s.DeletionObserved(key, "ns/other")
		}, false},
		{"deletions all seen", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectDeletions(key, []string{"ns/a", "ns/b"})
			s.DeletionObserved(key, "ns/b")
			s.DeletionObserved(key, "ns/a")
		}, true},
		{"expired", func(s *Store, clk *clocktesting.FakeClock) {
			s.ExpectCreations(key, 3)
			clk.Step(DefaultTTL + time.Second)
		}, true},
		{"not yet expired", func(s *Store, clk *clocktesting.FakeClock) {
			s.ExpectCreations(key, 3)
			clk.Step(DefaultTTL - time.Second)
		}, false},
		{"deleted owner starts clean", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectCreations(key, 3)
			s.Delete(key)
		}, true},
		{"new expectations replace old ones", func(s *Store, _ *clocktesting.FakeClock) {
			s.ExpectDeletions(key, []string{"ns/a"})
			s.ExpectCreations(key, 1)
			s.CreationObserved(key)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
			s := New(clk, DefaultTTL)
			tc.do(s, clk)
			if got := s.Satisfied(key); got != tc.want {
				adds, dels := s.Pending(key)
				t.Errorf("Satisfied = %v, want %v (pending adds %d dels %d)", got, tc.want, adds, dels)
			}
			if !s.Satisfied("ns/other-owner") {
				t.Error("another owner is held back")
			}
		})
	}
}
