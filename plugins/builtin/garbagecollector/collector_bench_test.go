package garbagecollector

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkReconcileOwnedObject measures the collector's answer for an
// object whose owner is alive, the case of almost every object it sees,
// with 10000 pods of 100 ReplicaSets cached: it must stay a few cache
// lookups, without API calls.
func BenchmarkReconcileOwnedObject(b *testing.B) {
	var cached []*metav1.PartialObjectMetadata
	for r := range 100 {
		cached = append(cached, obj(rsets, "ns", fmt.Sprintf("rs%d", r), fmt.Sprintf("rs-%d", r)))
		for p := range 100 {
			cached = append(cached, obj(pods, "ns", fmt.Sprintf("p%d-%d", r, p), fmt.Sprintf("p-%d-%d", r, p),
				ref(rsets, fmt.Sprintf("rs%d", r), fmt.Sprintf("rs-%d", r), true)))
		}
	}
	f := newFixture(b, cached, nil)
	k := keyOf(pods, cached[1])
	ctx := context.Background()
	for b.Loop() {
		if _, err := f.gc.reconcile(ctx, k); err != nil {
			b.Fatal(err)
		}
	}
	if n := len(f.api.Actions()); n != 0 {
		b.Fatalf("%d API calls", n)
	}
}
