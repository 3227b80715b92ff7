package main

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func TestReconcile(t *testing.T) {
	cfg := Config{Name: "cluster-info", Data: map[string]string{"region": "eu-1"}}
	managed := map[string]string{"app.kubernetes.io/managed-by": managedBy}
	now := metav1.Now()
	tests := []struct {
		name     string
		objs     []client.Object
		wantData map[string]string // nil: no ConfigMap expected
	}{
		{"creates it", []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}}, cfg.Data},
		{"repairs its data", []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "cluster-info", Labels: managed}, Data: map[string]string{"region": "us"}},
		}, cfg.Data},
		{"leaves a terminating namespace alone", []client.Object{
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", DeletionTimestamp: &now, Finalizers: []string{"kubernetes"}}},
		}, nil},
		{"namespace gone", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithObjects(tt.objs...).Build()
			r := &reconciler{c: c, cfg: cfg}
			for range 2 { // idempotent: a second pass changes nothing
				if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Name: "a"}}); err != nil {
					t.Fatal(err)
				}
			}
			var cm corev1.ConfigMap
			err := c.Get(context.Background(), types.NamespacedName{Namespace: "a", Name: "cluster-info"}, &cm)
			if tt.wantData == nil {
				if err == nil {
					t.Errorf("ConfigMap created: %+v", cm)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cm.Data["region"] != "eu-1" || cm.Labels["app.kubernetes.io/managed-by"] != managedBy {
				t.Errorf("ConfigMap = %+v", cm)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	if c, err := parseConfig(nil); err != nil || c.Name != "cluster-info" {
		t.Errorf("default: %+v, %v", c, err)
	}
	for _, bad := range []string{`{"name":"Not_A_Name"}`, `{"name":`, `{"data":"x"}`} {
		if _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
