package resourcequota

import (
	"context"
	"io"
	"log/slog"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	quotainstall "k8s.io/kubernetes/pkg/quota/v1/install"
)

func newIndexer() cache.Indexer {
	return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// fixture is a controller over in-memory caches holding objs, writing to a
// fake API that holds them too.
func fixture(t *testing.T, objs ...runtime.Object) (*controller, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset()
	caches := map[schema.GroupResource]cache.Indexer{}
	for _, o := range objs {
		gr := schema.GroupResource{Resource: "pods"}
		switch o.(type) {
		case *corev1.ResourceQuota:
			gr.Resource = "resourcequotas"
		case *corev1.ConfigMap:
			gr.Resource = "configmaps"
		}
		if caches[gr] == nil {
			caches[gr] = newIndexer()
		}
		if err := caches[gr].Add(o); err != nil {
			t.Fatal(err)
		}
		if err := client.Tracker().Add(o); err != nil {
			t.Fatal(err)
		}
	}
	lister := func(gvr schema.GroupVersionResource) (cache.GenericLister, error) {
		idx := caches[gvr.GroupResource()]
		if idx == nil {
			idx = newIndexer()
		}
		return cache.NewGenericLister(idx, gvr.GroupResource()), nil
	}
	conf, err := quotainstall.NewQuotaConfigurationForControllers(lister, informers.NewSharedInformerFactory(client, 0))
	if err != nil {
		t.Fatal(err)
	}
	quotas := caches[schema.GroupResource{Resource: "resourcequotas"}]
	if quotas == nil {
		quotas = newIndexer()
	}
	return &controller{client: client, quotas: corelisters.NewResourceQuotaLister(quotas),
		registry: generic.NewRegistry(conf.Evaluators()), logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, client
}

func pod(name string, phase corev1.PodPhase, requests, limits corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}}},
		Status: corev1.PodStatus{Phase: phase},
	}
}

func rq(hard corev1.ResourceList, scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "team"},
		Spec: corev1.ResourceQuotaSpec{Hard: hard, Scopes: scopes}}
}

func list(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func TestStatusMeasuresUsage(t *testing.T) {
	small := list("cpu", "100m", "memory", "64Mi")
	big := list("cpu", "1", "memory", "1Gi", "example.com/gpu", "1")
	pods := []runtime.Object{
		pod("a", corev1.PodRunning, small, small),
		pod("b", corev1.PodPending, big, big),
		pod("done", corev1.PodSucceeded, big, big), // terminal: counted by count/pods only
		pod("free", corev1.PodRunning, nil, nil),   // BestEffort
	}
	tests := []struct {
		name  string
		quota *corev1.ResourceQuota
		want  corev1.ResourceList
	}{
		{"pods and object counts", rq(list("pods", "10", "count/pods", "10", "configmaps", "5")),
			list("pods", "3", "count/pods", "4", "configmaps", "1")},
		{"requests and limits", rq(list("requests.cpu", "4", "limits.memory", "4Gi", "requests.example.com/gpu", "2")),
			list("requests.cpu", "1100m", "limits.memory", "1088Mi", "requests.example.com/gpu", "1")},
		{"BestEffort scope", rq(list("pods", "10"), corev1.ResourceQuotaScopeBestEffort), list("pods", "1")},
		{"NotBestEffort scope", rq(list("pods", "10", "requests.cpu", "4"), corev1.ResourceQuotaScopeNotBestEffort),
			list("pods", "2", "requests.cpu", "1100m")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "team"}}
			c, client := fixture(t, append([]runtime.Object{tc.quota, cm}, pods...)...)
			if _, err := c.reconcile(context.Background(), "team/q"); err != nil {
				t.Fatal(err)
			}
			got, err := client.CoreV1().ResourceQuotas("team").Get(context.Background(), "q", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !quota.Equals(got.Status.Hard, tc.quota.Spec.Hard) {
				t.Errorf("status.hard %v, want %v", got.Status.Hard, tc.quota.Spec.Hard)
			}
			if !quota.Equals(got.Status.Used, tc.want) {
				t.Errorf("status.used %v, want %v", got.Status.Used, tc.want)
			}
		})
	}
}

func TestPriorityClassScopeSelector(t *testing.T) {
	high := pod("high", corev1.PodRunning, nil, nil)
	high.Spec.PriorityClassName = "high"
	q := rq(list("pods", "10"))
	q.Spec.ScopeSelector = &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
		ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn, Values: []string{"high"}}}}
	c, _ := fixture(t, q, high, pod("low", corev1.PodRunning, nil, nil))
	st, err := c.status(q)
	if err != nil {
		t.Fatal(err)
	}
	if !quota.Equals(st.Used, list("pods", "1")) {
		t.Errorf("used %v, want pods=1 (only the high-priority pod)", st.Used)
	}
}

func TestCurrentStatusIsNotRewritten(t *testing.T) {
	q := rq(list("pods", "2"))
	q.Status = corev1.ResourceQuotaStatus{Hard: list("pods", "2"), Used: list("pods", "1")}
	c, client := fixture(t, q, pod("a", corev1.PodRunning, nil, nil))
	if _, err := c.reconcile(context.Background(), "team/q"); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		t.Errorf("unexpected %s %s", a.GetVerb(), a.GetSubresource())
	}
}

func TestTransformKeepsWhatQuotaReads(t *testing.T) {
	p := pod("a", corev1.PodRunning, list("cpu", "1"), list("memory", "1Gi"))
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "BIG", Value: "x"}}
	p.Spec.PriorityClassName = "high"
	p.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	got, err := Transform(p)
	if err != nil {
		t.Fatal(err)
	}
	slim := got.(*corev1.Pod)
	c := slim.Spec.Containers[0]
	if c.Image != "" || c.Env != nil || slim.Annotations != nil {
		t.Errorf("unread fields kept: %+v", slim)
	}
	if !quota.Equals(c.Resources.Requests, list("cpu", "1")) || slim.Spec.PriorityClassName != "high" || slim.Status.Phase != corev1.PodRunning {
		t.Errorf("read fields lost: %+v", slim)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := DefaultConfig()
	bad.Workers = 0
	if err := bad.Validate(); err == nil {
		t.Error("workers 0 accepted")
	}
}
