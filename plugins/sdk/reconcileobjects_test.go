package sdk

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// Every object of the informer is reconciled by its namespace/name, and
// run returns once its context ends.
func TestReconcileObjects(t *testing.T) {
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "one"}})
	f := informers.NewSharedInformerFactory(client, 0)
	seen := make(chan string, 10)
	run, err := ReconcileObjects("test", f.Core().V1().ConfigMaps().Informer(), 2,
		func(_ context.Context, key string) (Result, error) { seen <- key; return Result{}, nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Start(ctx.Done())
	done := make(chan error)
	go func() { done <- run(ctx) }()
	if got := <-seen; got != "a/one" {
		t.Errorf("reconciled %q, want a/one", got)
	}
	if _, err := client.CoreV1().ConfigMaps("b").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "b", Name: "two"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != "b/two" {
		t.Errorf("reconciled %q, want b/two", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after its context ended")
	}
	f.Shutdown()
}
