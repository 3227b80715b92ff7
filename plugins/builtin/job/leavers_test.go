package job

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// The conformance spec "should adopt matching orphans and release
// non-matching pods" removes every label of a Job's pod: the pod leaves the
// label-selected cache (a delete event) and must be released, and lose the
// tracking finalizer nobody will remove otherwise.
func TestPodWhoseLabelsAreRemovedIsReleased(t *testing.T) {
	f := newFixture(t, newJob("rel", func(j *batchv1.Job) { j.Spec.Parallelism = ptrInt32(2); j.Spec.Completions = ptrInt32(4) }))
	fakeNames(f.client)
	f.sync("rel")
	pods := f.pods()
	if len(pods) != 2 {
		t.Fatalf("%d pods, want 2", len(pods))
	}
	p := pods[0]
	// The delete event of a pod leaving the label selection carries its
	// last matching version, labels included.
	if gone, maybe := mayStillExist(p.DeepCopy()); !maybe || gone.Name != p.Name {
		t.Fatal("a pod removed from the cache without a deletion timestamp is not checked")
	}
	if _, maybe := mayStillExist(cache.DeletedFinalStateUnknown{Key: "ns/" + p.Name, Obj: p.DeepCopy()}); !maybe {
		t.Error("a tombstone's pod is not checked")
	}
	deleting := p.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{}
	if _, maybe := mayStillExist(deleting); maybe {
		t.Error("a pod whose deletion had begun is checked again")
	}
	p.Labels = nil
	if _, err := f.client.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if _, err := f.c.syncLeaver(context.Background(), "ns/"+p.Name); err != nil {
		t.Fatal(err)
	}
	got, err := f.client.CoreV1().Pods("ns").Get(context.Background(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(got); ref != nil {
		t.Errorf("pod still controlled by %s/%s, want released", ref.Kind, ref.Name)
	}
	if hasFinalizer(got) {
		t.Error("released pod keeps the tracking finalizer")
	}
	// The Job replaces it: two active pods it controls again.
	f.sync("rel")
	if a := f.job("rel").Status.Active; a != 2 {
		t.Errorf("active %d after the release, want 2 (a replacement)", a)
	}
}

func TestUnlabelledPodStillMatchingIsKept(t *testing.T) {
	f := newFixture(t, newJob("keep", func(j *batchv1.Job) {
		j.Spec.ManualSelector = ptrBool(true)
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}
		j.Spec.Template.Labels = map[string]string{"app": "x"}
	}))
	fakeNames(f.client)
	f.sync("keep")
	p := f.pods()[0]
	delete(p.Labels, batchv1.JobNameLabel)
	if _, err := f.client.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.syncLeaver(context.Background(), "ns/"+p.Name); err != nil {
		t.Fatal(err)
	}
	got, _ := f.client.CoreV1().Pods("ns").Get(context.Background(), p.Name, metav1.GetOptions{})
	if metav1.GetControllerOf(got) == nil || !hasFinalizer(got) {
		t.Error("a pod still matching its Job's selector was released")
	}
}

func ptrInt32(v int32) *int32 { return &v }
func ptrBool(v bool) *bool    { return &v }
