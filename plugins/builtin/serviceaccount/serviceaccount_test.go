package serviceaccount

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func fixture(t *testing.T, objs ...any) (*controller, *fake.Clientset) {
	t.Helper()
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	nsIdx, saIdx, cmIdx := idx(), idx(), idx()
	client := fake.NewClientset()
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Namespace:
			_ = nsIdx.Add(o)
			_ = client.Tracker().Add(o)
		case *corev1.ServiceAccount:
			_ = saIdx.Add(o)
			_ = client.Tracker().Add(o)
		case *corev1.ConfigMap:
			_ = cmIdx.Add(o)
			_ = client.Tracker().Add(o)
		}
	}
	return &controller{
		client: client, namespaces: corelisters.NewNamespaceLister(nsIdx),
		accounts: corelisters.NewServiceAccountLister(saIdx), configMaps: corelisters.NewConfigMapLister(cmIdx),
		rootCA: "CA", logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, client
}

func ns(name string, phase corev1.NamespacePhase) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NamespaceStatus{Phase: phase}}
}

func TestActiveNamespaceGetsAccountAndRootCA(t *testing.T) {
	ctx := context.Background()
	c, client := fixture(t, ns("app", corev1.NamespaceActive))
	if _, err := c.reconcile(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ServiceAccounts("app").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("default service account: %v", err)
	}
	cm, err := client.CoreV1().ConfigMaps("app").Get(ctx, RootCAConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["ca.crt"] != "CA" || !strings.Contains(cm.Annotations[descriptionAnnotation], "kube-apiserver") {
		t.Errorf("configmap %+v", cm)
	}
}

func TestTerminatingNamespaceIsLeftAlone(t *testing.T) {
	c, client := fixture(t, ns("going", corev1.NamespaceTerminating))
	if _, err := c.reconcile(context.Background(), "going"); err != nil {
		t.Fatal(err)
	}
	if n := len(client.Actions()); n != 0 {
		t.Errorf("%d API calls for a terminating namespace: %v", n, client.Actions())
	}
}

func TestRootCARestoredAndOthersKept(t *testing.T) {
	ctx := context.Background()
	tampered := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: RootCAConfigMap, Namespace: "app", Labels: map[string]string{"mine": "yes"}},
		Data:       map[string]string{"ca.crt": "forged", "extra": "x"},
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "app"}}
	c, client := fixture(t, ns("app", corev1.NamespaceActive), tampered, sa)
	if _, err := c.reconcile(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	cm, _ := client.CoreV1().ConfigMaps("app").Get(ctx, RootCAConfigMap, metav1.GetOptions{})
	if len(cm.Data) != 1 || cm.Data["ca.crt"] != "CA" || cm.Labels["mine"] != "yes" || cm.Annotations[descriptionAnnotation] == "" {
		t.Errorf("configmap after restore %+v", cm)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" {
			t.Errorf("created %s although it exists", a.GetResource().Resource)
		}
	}
}

func TestClusterCAIsRequired(t *testing.T) {
	if _, err := clusterCA(&rest.Config{Host: "https://x"}); err == nil || !strings.Contains(err.Error(), "no CA bundle") {
		t.Errorf("error %v", err)
	}
	if ca, err := clusterCA(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: []byte("PEM")}}); err != nil || ca != "PEM" {
		t.Errorf("ca %q err %v", ca, err)
	}
}
