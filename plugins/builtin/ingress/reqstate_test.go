package ingress

import (
	"context"
	"errors"
	"testing"
)

// A request's inflight state is its context: the parent's values,
// deadline and cancellation, plus the selection.
func TestInflightIsTheRequestContext(t *testing.T) {
	type key struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	b := &Backend{Name: "b", Endpoints: []string{"10.0.0.1:80", "10.0.0.2:80"}}
	st := newInflight(parent, &Route{}).to(b)
	child, stop := context.WithCancel(st) // as the transport derives one
	defer stop()
	if sel, ok := selectionOf(child); !ok || sel.backend != b {
		t.Fatalf("selection %v %v, want backend b", sel, ok)
	}
	if child.Value(key{}) != "v" {
		t.Error("the parent's value is lost")
	}
	if _, ok := selectionOf(parent); ok {
		t.Error("the parent carries a selection")
	}
	cancel()
	<-child.Done()
	if !errors.Is(st.Err(), context.Canceled) || !errors.Is(child.Err(), context.Canceled) {
		t.Errorf("after the parent's cancel: %v, %v", st.Err(), child.Err())
	}
	next := newInflight(context.Background(), &Route{}).to(b)
	if st.sel.endpoint(0) == next.sel.endpoint(0) || st.sel.endpoint(1) != next.sel.endpoint(0) {
		t.Errorf("round robin: first %s then %s", st.sel.endpoint(0), next.sel.endpoint(0))
	}
}

func TestBufferPool(t *testing.T) {
	var bp bufferPool
	b := bp.Get()
	if len(b) != copyBufSize {
		t.Fatalf("buffer of %d bytes, want %d", len(b), copyBufSize)
	}
	bp.Put(b)
	bp.Put(make([]byte, 10)) // too small: dropped, not lent out later
	for range 3 {
		if got := bp.Get(); len(got) != copyBufSize {
			t.Fatalf("buffer of %d bytes, want %d", len(got), copyBufSize)
		}
	}
}
