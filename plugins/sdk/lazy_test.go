package sdk

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/cache"
	clocktesting "k8s.io/utils/clock/testing"
)

// gateHarness drives a gate with a fake clock and a count the test sets.
type gateHarness struct {
	n       atomic.Int64
	changed chan struct{}
	started chan struct{}
	stopped chan struct{}
	idles   chan string
	clock   *clocktesting.FakeClock
	g       *gate
}

func newGateHarness(active func(ctx context.Context) error) *gateHarness {
	h := &gateHarness{changed: make(chan struct{}, 1), started: make(chan struct{}, 8), stopped: make(chan struct{}, 8),
		idles: make(chan string, 8), clock: clocktesting.NewFakeClock(time.Unix(0, 0))}
	if active == nil {
		active = func(ctx context.Context) error {
			h.started <- struct{}{}
			<-ctx.Done()
			h.stopped <- struct{}{}
			return nil
		}
	}
	h.g = &gate{what: "Widgets", linger: time.Minute, clock: h.clock, count: func() int { return int(h.n.Load()) },
		changed: h.changed, active: active, idle: func(m string) { h.idles <- m },
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return h
}

// set changes the count and signals it, as the presence watch does.
func (h *gateHarness) set(n int64) {
	h.n.Store(n)
	h.changed <- struct{}{}
}

func receive[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s", what)
		panic("unreachable")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestGateRunsCachesOnlyWhileObjectsExist(t *testing.T) {
	h := newGateHarness(nil)
	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- h.g.run(ctx) }()

	if m := receive(t, h.idles, "idle status"); m != "idle: no Widgets exist; caches start when one is created" {
		t.Fatalf("idle status %q", m)
	}
	h.set(1)
	receive(t, h.started, "start after the first object appeared")

	// The last object goes: the caches stay for the linger period.
	h.set(0)
	waitFor(t, h.clock.HasWaiters, "armed the linger timer")
	h.clock.Step(time.Minute - time.Second)
	// An object created within the period cancels the stop.
	h.set(1)
	waitFor(t, func() bool { return !h.clock.HasWaiters() }, "disarmed the linger timer")
	h.clock.Step(time.Hour)
	select {
	case <-h.stopped:
		t.Fatal("caches stopped while an object exists")
	default:
	}

	h.set(0)
	waitFor(t, h.clock.HasWaiters, "armed the linger timer again")
	h.clock.Step(time.Minute)
	receive(t, h.stopped, "stop a linger period after the last object went")
	receive(t, h.idles, "idle status after stopping")

	// A new object later starts them again.
	h.set(3)
	receive(t, h.started, "restart for an object created later")
	cancel()
	receive(t, h.stopped, "stop when the plugin stops")
	if err := receive(t, result, "run's return"); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestGateStartsAtOnceWhenObjectsAlreadyExist(t *testing.T) {
	h := newGateHarness(nil)
	h.n.Store(2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = h.g.run(ctx) }()
	receive(t, h.started, "start with objects present at startup")
	select {
	case m := <-h.idles:
		t.Fatalf("reported idle (%q) with objects present", m)
	default:
	}
}

func TestGateReturnsTheControllersError(t *testing.T) {
	boom := errors.New("boom")
	h := newGateHarness(func(context.Context) error { return boom })
	h.n.Store(1)
	if err := h.g.run(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("run returned %v, want the controller's error", err)
	}
}

func TestPresenceCountsObjectsKeepingNamesOnly(t *testing.T) {
	gvr := schema.GroupVersionResource{Version: "v1", Resource: "replicationcontrollers"}
	scheme := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(scheme)
	rc := func(name string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ReplicationController"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"big": "label"},
				Annotations: map[string]string{"a": "b"}, Finalizers: []string{"f"}}}
	}
	client := metadatafake.NewSimpleMetadataClient(scheme, rc("one"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := watchPresence(ctx, client, gvr)
	if err != nil {
		t.Fatal(err)
	}
	if !cache.WaitForCacheSync(ctx.Done(), p.inf.HasSynced) {
		t.Fatal("did not sync")
	}
	if n := p.count(); n != 1 {
		t.Fatalf("count %d, want 1", n)
	}
	obj, ok, err := p.inf.GetStore().GetByKey("ns/one")
	if err != nil || !ok {
		t.Fatalf("ns/one not cached: %v", err)
	}
	m := obj.(*metav1.PartialObjectMetadata)
	if m.Labels != nil || m.Annotations != nil || m.Finalizers != nil || m.Name != "one" {
		t.Fatalf("cached %+v, want the name only", m.ObjectMeta)
	}
	// Drain the signal of the initial list, then a create must signal.
	select {
	case <-p.changed:
	default:
	}
	if _, err := client.Resource(gvr).Namespace("ns").(metadatafake.MetadataClient).CreateFake(rc("two"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	receive(t, p.changed, "signal for a created object")
	waitFor(t, func() bool { return p.count() == 2 }, "counted the created object")
	if err := client.Resource(gvr).Namespace("ns").Delete(ctx, "one", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return p.count() == 1 }, "counted the deletion")
}
