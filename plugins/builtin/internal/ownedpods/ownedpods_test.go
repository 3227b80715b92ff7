package ownedpods

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/builtin/internal/expectations"
)

func setup(t *testing.T) (*Handlers[*appsv1.StatefulSet], workqueue.TypedRateLimitingInterface[string], *appsv1.StatefulSet) {
	t.Helper()
	owners := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	set := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "set-uid"},
		Spec: appsv1.StatefulSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, MinReadySeconds: 5}}
	if err := owners.Add(set); err != nil {
		t.Fatal(err)
	}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	t.Cleanup(q.ShutDown)
	h := &Handlers[*appsv1.StatefulSet]{Kind: "StatefulSet", Owners: owners, Queue: q, Exp: expectations.New(clock.RealClock{}, time.Minute),
		Selector:        func(s *appsv1.StatefulSet) *metav1.LabelSelector { return s.Spec.Selector },
		MinReadySeconds: func(s *appsv1.StatefulSet) int32 { return s.Spec.MinReadySeconds }}
	return h, q, set
}

func pod(name string, uid types.UID, rv string, lbls map[string]string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", ResourceVersion: rv, Labels: lbls}}
	if uid != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "StatefulSet", Name: "web", UID: uid, Controller: &yes}}
	}
	return p
}

func drain(q workqueue.TypedRateLimitingInterface[string]) []string {
	var out []string
	for q.Len() > 0 {
		k, _ := q.Get()
		out = append(out, k)
		q.Done(k)
	}
	return out
}

// TestPodEvents: an owned pod queues its owner and counts as an observed
// creation; a pod naming the owner with another UID (a previous owner of
// the same name) queues nothing; an orphan queues the owners whose selector
// matches it, which may adopt it.
func TestPodEvents(t *testing.T) {
	h, q, _ := setup(t)
	h.Exp.ExpectCreations("ns/web", 1)
	h.PodEvents().OnAdd(pod("web-0", "set-uid", "1", map[string]string{"app": "web"}), false)
	if got := drain(q); len(got) != 1 || got[0] != "ns/web" {
		t.Errorf("owned pod queued %v, want ns/web", got)
	}
	if !h.Exp.Satisfied("ns/web") {
		t.Error("the owned pod's creation was not observed")
	}
	h.PodEvents().OnAdd(pod("stale", "old-uid", "1", map[string]string{"app": "web"}), false)
	if got := drain(q); len(got) != 0 {
		t.Errorf("a pod of a previous owner of the name queued %v, want nothing", got)
	}
	h.PodEvents().OnAdd(pod("orphan", "", "1", map[string]string{"app": "web"}), false)
	h.PodEvents().OnAdd(pod("stranger", "", "1", map[string]string{"app": "db"}), false)
	if got := drain(q); len(got) != 1 || got[0] != "ns/web" {
		t.Errorf("orphans queued %v, want ns/web for the matching one only", got)
	}
}

// TestPodBecomesReadyLooksAgainAfterMinReadySeconds: no event marks the
// moment a ready pod becomes available, so the owner is queued again then.
func TestPodBecomesReadyLooksAgainAfterMinReadySeconds(t *testing.T) {
	h, q, set := setup(t)
	set.Spec.MinReadySeconds = 1
	old := pod("web-0", "set-uid", "1", nil)
	cur := pod("web-0", "set-uid", "2", nil)
	cur.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	h.PodEvents().OnUpdate(old, cur)
	if got := drain(q); len(got) != 1 {
		t.Fatalf("update queued %v, want the owner once now", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for q.Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := drain(q); len(got) != 1 || got[0] != "ns/web" {
		t.Errorf("after minReadySeconds: %v, want ns/web again", got)
	}
}
