package history

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func owner(image string) (*appsv1.DaemonSet, Owner) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "ns", UID: "u1"}}
	tmpl := &v1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: image}}},
	}
	data, err := Patch(tmpl)
	if err != nil {
		panic(err)
	}
	return ds, Owner{Object: ds, Kind: appsv1.SchemeGroupVersion.WithKind("DaemonSet"), Labels: tmpl.Labels, Data: data}
}

func list(t *testing.T, client *fake.Clientset) []*appsv1.ControllerRevision {
	t.Helper()
	l, err := client.AppsV1().ControllerRevisions("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.ControllerRevision
	for i := range l.Items {
		out = append(out, &l.Items[i])
	}
	Sort(out)
	return out
}

func TestSyncCreatesRenumbersAndRoundTrips(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	_, a := owner("v1")
	r1, cc, err := Sync(ctx, client, a, nil)
	if err != nil || r1.Revision != 1 || cc != 0 {
		t.Fatalf("first revision %+v cc %d err %v", r1, cc, err)
	}
	if r1.Labels[HashLabel] == "" || r1.Labels["app"] != "agent" || r1.Name != "agent-"+r1.Labels[HashLabel] {
		t.Errorf("revision metadata %+v", r1.ObjectMeta)
	}
	tmpl, err := Template(r1)
	if err != nil || tmpl.Spec.Containers[0].Image != "v1" {
		t.Fatalf("template %+v err %v", tmpl, err)
	}
	// Same template again: no new revision.
	if again, _, _ := Sync(ctx, client, a, list(t, client)); again.Name != r1.Name || len(list(t, client)) != 1 {
		t.Errorf("same template made a new revision %s", again.Name)
	}
	_, b := owner("v2")
	r2, _, err := Sync(ctx, client, b, list(t, client))
	if err != nil || r2.Revision != 2 || r2.Name == r1.Name {
		t.Fatalf("second revision %+v err %v", r2, err)
	}
	// Undo to v1: the old revision becomes number 3, nothing is created.
	r3, _, err := Sync(ctx, client, a, list(t, client))
	if err != nil || r3.Name != r1.Name || r3.Revision != 3 || len(list(t, client)) != 2 {
		t.Fatalf("rollback revision %+v err %v", r3, err)
	}
}

func TestSyncCollisionRaisesCount(t *testing.T) {
	ctx := context.Background()
	_, a := owner("v1")
	zero := int32(0)
	squatter := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: Name("agent", Hash(a.Data.Raw, &zero)), Namespace: "ns"},
		Data:       runtime.RawExtension{Raw: []byte(`{"other":true}`)},
	}
	client := fake.NewClientset(squatter)
	r, cc, err := Sync(ctx, client, a, nil)
	if err != nil || cc != 1 || r.Name == squatter.Name {
		t.Fatalf("revision %v cc %d err %v", r.Name, cc, err)
	}
}

func TestTruncateKeepsLiveAndLimit(t *testing.T) {
	ctx := context.Background()
	var objs []runtime.Object
	for i, n := range []string{"a", "b", "c", "d", "e"} {
		objs = append(objs, &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "ns"}, Revision: int64(i + 1)})
	}
	client := fake.NewClientset(objs...)
	revs := list(t, client)
	if err := Truncate(ctx, client, revs, map[string]bool{"a": true, "e": true}, 1); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list(t, client) {
		names = append(names, r.Name)
	}
	if want := "[a d e]"; fmtNames(names) != want {
		t.Errorf("kept %v, want %s", names, want)
	}
}

func fmtNames(n []string) string {
	s := "["
	for i, x := range n {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}
