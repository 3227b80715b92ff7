package namespace

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/metadata/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/keelson/keelson/plugins/sdk"
)

var (
	configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	widgets    = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
)

func meta(gvr schema.GroupVersionResource, kind, name string, finalizers ...string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: gvr.GroupVersion().String(), Kind: kind},
		ObjectMeta: metav1.ObjectMeta{Namespace: "doomed", Name: name, Finalizers: finalizers},
	}
}

func discovered() ([]*metav1.APIResourceList, error) {
	return []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "configmaps", Namespaced: true, Kind: "ConfigMap", Verbs: []string{"delete", "deletecollection", "list"}},
			{Name: "bindings", Namespaced: true, Kind: "Binding", Verbs: []string{"create"}},
		}},
		{GroupVersion: "example.com/v1", APIResources: []metav1.APIResource{
			{Name: "widgets", Namespaced: true, Kind: "Widget", Verbs: []string{"delete", "list"}},
		}},
	}, nil
}

func TestDeletesContentThenFinalizes(t *testing.T) {
	ctx := context.Background()
	now := metav1.Now()
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "doomed", UID: "ns-1", DeletionTimestamp: &now},
		Spec:       corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	kube := kubefake.NewClientset(ns)
	scheme := runtime.NewScheme()
	for gvr, kind := range map[schema.GroupVersionResource]string{configMaps: "ConfigMap", widgets: "Widget"} {
		scheme.AddKnownTypeWithName(gvr.GroupVersion().WithKind(kind), &metav1.PartialObjectMetadata{})
		scheme.AddKnownTypeWithName(gvr.GroupVersion().WithKind(kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	md := fake.NewSimpleMetadataClient(scheme)
	for _, o := range []struct {
		gvr schema.GroupVersionResource
		obj *metav1.PartialObjectMetadata
	}{
		{configMaps, meta(configMaps, "ConfigMap", "a")},
		{configMaps, meta(configMaps, "ConfigMap", "b")},
		{widgets, meta(widgets, "Widget", "held", "example.com/hold")},
	} {
		if err := md.Tracker().Create(o.gvr, o.obj, "doomed"); err != nil {
			t.Fatal(err)
		}
	}
	// The fake deletes at once; a finalizer holds the widget, as the API
	// server would.
	held := true
	// Neither does the fake implement deletecollection.
	md.PrependReactor("delete-collection", "configmaps", func(a clienttesting.Action) (bool, runtime.Object, error) {
		for _, n := range []string{"a", "b"} {
			_ = md.Tracker().Delete(configMaps, a.GetNamespace(), n)
		}
		return true, nil, nil
	})
	md.PrependReactor("delete", "widgets", func(clienttesting.Action) (bool, runtime.Object, error) { return held, nil, nil })
	c := &controller{client: kube, metadata: md, discover: discovered, queue: sdk.NewQueue[string]("test"),
		logger: slog.New(slog.NewTextHandler(io.Discard, nil)), now: time.Now}

	res, err := c.reconcile(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter != (finalizerWaitSeconds/2+1)*time.Second {
		t.Errorf("requeue after %s while a finalizer holds content", res.RequeueAfter)
	}
	got, _ := kube.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
	if got.Status.Phase != corev1.NamespaceTerminating || len(got.Spec.Finalizers) != 1 {
		t.Errorf("phase %s finalizers %v: want Terminating, still finalized by us", got.Status.Phase, got.Spec.Finalizers)
	}
	for typ, want := range map[corev1.NamespaceConditionType]string{
		corev1.NamespaceContentRemaining:         "Some resources are remaining: widgets.example.com has 1 resource instances",
		corev1.NamespaceFinalizersRemaining:      "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances",
		corev1.NamespaceDeletionDiscoveryFailure: "All resources successfully discovered",
	} {
		if c := find(got.Status.Conditions, typ); c == nil || c.Message != want {
			t.Errorf("condition %s = %+v, want %q", typ, c, want)
		}
	}
	if left, _ := md.Resource(configMaps).Namespace("doomed").List(ctx, metav1.ListOptions{}); len(left.Items) != 0 {
		t.Errorf("%d configmaps left", len(left.Items))
	}

	// The finalizer is done: the namespace is finalized.
	held = false
	if _, err := c.reconcile(ctx, "doomed"); err != nil {
		t.Fatal(err)
	}
	got, _ = kube.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
	if len(got.Spec.Finalizers) != 0 {
		t.Errorf("finalizers %v after the content is gone", got.Spec.Finalizers)
	}
	if c := find(got.Status.Conditions, corev1.NamespaceContentRemaining); c == nil || c.Status != corev1.ConditionFalse {
		t.Errorf("content condition %+v, want False once removed", c)
	}
}

func find(conds []corev1.NamespaceCondition, t corev1.NamespaceConditionType) *corev1.NamespaceCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

func TestConditionsReportFailuresAndTransitions(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var st corev1.NamespaceStatus
	var c conditions
	if !c.apply(&st, t0) || len(st.Conditions) != 5 {
		t.Fatalf("first pass: %d conditions", len(st.Conditions))
	}
	for _, cond := range st.Conditions {
		if cond.Status != corev1.ConditionFalse {
			t.Errorf("%s = %s on a clean pass", cond.Type, cond.Status)
		}
	}
	if (&conditions{}).apply(&st, t0.Add(time.Minute)) {
		t.Error("an unchanged pass reports a change")
	}

	c = conditions{}
	c.discoveryFailed(errors.New("metrics.k8s.io/v1beta1: unavailable"))
	c.deleteFailed(errors.New("b failed"))
	c.deleteFailed(errors.New("a failed"))
	t1 := t0.Add(time.Hour)
	if !c.apply(&st, t1) {
		t.Fatal("failures not applied")
	}
	disc := find(st.Conditions, corev1.NamespaceDeletionDiscoveryFailure)
	if disc.Status != corev1.ConditionTrue || disc.Reason != "DiscoveryFailed" || !disc.LastTransitionTime.Time.Equal(t1) {
		t.Errorf("discovery condition %+v", disc)
	}
	del := find(st.Conditions, corev1.NamespaceDeletionContentFailure)
	if del.Message != "Failed to delete all resource types, 2 remaining: a failed, b failed" {
		t.Errorf("content failure message %q", del.Message)
	}
	if ok := find(st.Conditions, corev1.NamespaceContentRemaining); !ok.LastTransitionTime.Time.Equal(t0) {
		t.Errorf("an unchanged condition's transition time moved to %s", ok.LastTransitionTime)
	}
}
