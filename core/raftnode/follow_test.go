package raftnode

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestFollowLeadership: the work runs exactly while this server leads, once
// per term, and stops when leadership is lost or the term changes.
func TestFollowLeadership(t *testing.T) {
	events := make(chan LeadershipEvent)
	var mu sync.Mutex
	running := map[uint64]bool{}
	var started []uint64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var current uint64
	go func() {
		done <- FollowLeadership(ctx, events, func(ctx context.Context, _ uint64) {
			mu.Lock()
			term := current
			running[term] = true
			started = append(started, term)
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[term] = false
			mu.Unlock()
		})
	}()
	send := func(leader bool, term uint64) {
		mu.Lock()
		current = term
		mu.Unlock()
		events <- LeadershipEvent{IsLeader: leader, Term: term}
	}
	waitRunning := func(term uint64, want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			got := running[term]
			mu.Unlock()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("work for term %d running = %v, want %v", term, got, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	send(false, 1)
	send(true, 2)
	waitRunning(2, true)
	send(true, 2) // the same term again: no second run
	send(true, 3) // a new term: stop and start afresh
	waitRunning(2, false)
	waitRunning(3, true)
	send(false, 4)
	waitRunning(3, false)
	send(true, 5)
	waitRunning(5, true)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitRunning(5, false) // returned only after the last run stopped
	mu.Lock()
	defer mu.Unlock()
	if len(started) != 3 {
		t.Errorf("work started for terms %v, want 2, 3 and 5", started)
	}
}
