package sdk

import (
	"context"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
}

// Two member runs share one cache; the one that ends takes its handlers
// with it and leaves the other's, and the cache, running.
func TestMemberViewsShareOneCacheAndShutdownRemovesOnlyTheirHandlers(t *testing.T) {
	client := fake.NewClientset(pod("a"))
	shared := newSharedInformers(client)
	first, second := shared.view("first"), shared.view("second")
	var seenFirst, seenSecond atomic.Int32
	count := func(n *atomic.Int32) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{AddFunc: func(any) { n.Add(1) }}
	}
	inf1 := first.Core().V1().Pods().Informer()
	inf2 := second.Core().V1().Pods().Informer()
	if inf1.GetStore() != inf2.GetStore() {
		t.Fatal("the two member views got two pod caches")
	}
	if _, err := inf1.AddEventHandler(count(&seenFirst)); err != nil {
		t.Fatal(err)
	}
	if _, err := inf2.AddEventHandler(count(&seenSecond)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	first.Start(stop)
	synced := first.WaitForCacheSync(stop)
	if len(synced) != 1 || !synced[reflect.TypeOf(&corev1.Pod{})] {
		t.Errorf("the first view waited for %v, want its pod cache only", synced)
	}
	second.Start(stop)
	second.WaitForCacheSync(stop)
	waitCount(t, &seenFirst, 1)
	waitCount(t, &seenSecond, 1)
	cached, _, _ := inf1.GetStore().GetByKey("default/a")
	if len(cached.(*corev1.Pod).ManagedFields) != 0 {
		t.Error("the shared cache keeps managedFields")
	}

	first.Shutdown()
	if _, err := client.CoreV1().Pods("default").Create(context.Background(), pod("b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, &seenSecond, 2)
	if n := seenFirst.Load(); n != 1 {
		t.Errorf("the ended run's handler saw %d adds, want only the one before its Shutdown", n)
	}
	if inf2.IsStopped() {
		t.Error("one member's Shutdown stopped the shared cache")
	}
}

func waitCount(t *testing.T, n *atomic.Int32, want int32) {
	t.Helper()
	for end := time.Now().Add(time.Minute); n.Load() < want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("handler saw %d events, want %d", n.Load(), want)
		}
	}
}

// A member's own (filtered) informer is not handed to another member, and
// two members' indexes of the same name stay apart.
func TestMemberViewsKeepCustomInformersAndIndexesApart(t *testing.T) {
	client := fake.NewClientset(pod("a"))
	shared := newSharedInformers(client)
	first, second := shared.view("first"), shared.view("second")
	custom := func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewPodInformer(c, "default", resync, cache.Indexers{})
	}
	if first.InformerFor(&corev1.Pod{}, custom).GetStore() == second.InformerFor(&corev1.Pod{}, custom).GetStore() {
		t.Error("two members' own informers of one type share a cache")
	}
	inf1, inf2 := first.Core().V1().Pods().Informer(), second.Core().V1().Pods().Informer()
	byName := func(obj any) ([]string, error) { return []string{obj.(*corev1.Pod).Name}, nil }
	byNamespace := func(obj any) ([]string, error) { return []string{obj.(*corev1.Pod).Namespace}, nil }
	if err := inf1.AddIndexers(cache.Indexers{"key": byName}); err != nil {
		t.Fatal(err)
	}
	if err := inf2.AddIndexers(cache.Indexers{"key": byNamespace}); err != nil {
		t.Fatalf("a second member's index of the same name: %v", err)
	}
	if err := inf1.AddIndexers(cache.Indexers{"key": byName}); err != nil {
		t.Fatalf("a restarted member adding its index again: %v", err)
	}
	stop := make(chan struct{})
	defer close(stop)
	first.Start(stop)
	first.WaitForCacheSync(stop)
	if got, err := inf1.GetIndexer().ByIndex("key", "a"); err != nil || len(got) != 1 {
		t.Errorf("first's index by name: %d objects, %v", len(got), err)
	}
	if got, err := inf2.GetIndexer().ByIndex("key", "default"); err != nil || len(got) != 1 {
		t.Errorf("second's index by namespace: %d objects, %v", len(got), err)
	}
	if got, err := inf2.GetIndexer().ByIndex(cache.NamespaceIndex, "default"); err != nil || len(got) != 1 {
		t.Errorf("the informer's own namespace index: %d objects, %v", len(got), err)
	}
}
