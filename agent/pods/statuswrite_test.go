package pods

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/keelson/keelson/agent/runtime"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// echo is the pod as the API hands it back: through JSON, which keeps
// times to the second.
func echo(t *testing.T, pod *v1.Pod) *v1.Pod {
	t.Helper()
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	var out v1.Pod
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestStatusWrittenOnce: a running pod's status is written once. Neither
// the API's echo of it (times cut to the second) nor a sync that still sees
// the informer's older copy (no StartTime yet) writes it again, as kubelet's
// status manager does not.
func TestStatusWrittenOnce(t *testing.T) {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 12, 0, 0, 123456789, time.UTC))
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u"},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "app"}}},
		Status:     v1.PodStatus{Phase: v1.PodPending},
	}
	client := fake.NewSimpleClientset(pod)
	m := New(Options{Node: fakeNode{}, Client: client, Clock: clock, SyncInterval: time.Minute})
	w := newWorker(m, pod.UID)
	cs := podContainers{"app": {{
		ID: "c1", State: runtime.StateRunning, Labels: map[string]string{labelAttempt: "0"},
		CreatedAt: clock.Now().Add(-time.Second), StartedAt: clock.Now().Add(-500 * time.Millisecond),
	}}}
	ctx := context.Background()
	sync := func(seen *v1.Pod) {
		t.Helper()
		if err := w.writeStatus(ctx, seen, w.status(seen, cs, true, false)); err != nil {
			t.Fatal(err)
		}
	}
	sync(pod)
	clock.Advance(1500 * time.Millisecond)
	sync(pod) // the informer has not caught up
	stored, err := client.CoreV1().Pods("ns").Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(1500 * time.Millisecond)
	sync(echo(t, stored))
	writes := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("%d status writes for one running pod, want 1", writes)
	}
	if st := stored.Status; st.Phase != v1.PodRunning || st.StartTime == nil || st.StartTime.Nanosecond() != 0 {
		t.Errorf("written status: phase %s start time %v, want Running and a time to the second", st.Phase, st.StartTime)
	}
}
