package ttlafterfinished

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func job(ttl *int32, finished bool) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ns", UID: "u", ResourceVersion: "1"},
		Spec: batchv1.JobSpec{TTLSecondsAfterFinished: ttl}}
	if finished {
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0)}}
	}
	return j
}

func TestTTLAfterFinished(t *testing.T) {
	cases := []struct {
		name        string
		cached      *batchv1.Job
		fresh       *batchv1.Job
		elapsed     time.Duration
		wantDeleted bool
		wantRequeue time.Duration
	}{
		{"ttl 0 deletes at once", job(ptr.To[int32](0), true), nil, 0, true, 0},
		{"ttl 5 waits", job(ptr.To[int32](5), true), nil, 2 * time.Second, false, 3 * time.Second},
		{"ttl 5 expired", job(ptr.To[int32](5), true), nil, 5 * time.Second, true, 0},
		{"unfinished job stays", job(ptr.To[int32](0), false), nil, time.Hour, false, 0},
		{"no ttl stays", job(nil, true), nil, time.Hour, false, 0},
		{"ttl raised since the cache saw it", job(ptr.To[int32](5), true), job(ptr.To[int32](100), true), 10 * time.Second, false, 90 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stored := tc.cached
			if tc.fresh != nil {
				stored = tc.fresh
			}
			client := fake.NewClientset(stored)
			var deleted *metav1.DeleteOptions
			client.PrependReactor("delete", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
				o := a.(k8stesting.DeleteActionImpl).GetDeleteOptions()
				deleted = &o
				return false, nil, nil
			})
			clk := clocktesting.NewFakeClock(t0.Add(tc.elapsed))
			c, err := New(client, informers.NewSharedInformerFactory(client, 0), slog.New(slog.NewTextHandler(io.Discard, nil)), clk)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.jobs.GetIndexer().Add(tc.cached)
			res, err := c.sync(context.Background(), "ns/j")
			if err != nil {
				t.Fatal(err)
			}
			if (deleted != nil) != tc.wantDeleted || res.RequeueAfter != tc.wantRequeue {
				t.Fatalf("deleted %v requeue %v, want %v and %v", deleted != nil, res.RequeueAfter, tc.wantDeleted, tc.wantRequeue)
			}
			if deleted != nil {
				if deleted.PropagationPolicy == nil || *deleted.PropagationPolicy != metav1.DeletePropagationForeground {
					t.Errorf("propagation %v, want Foreground", deleted.PropagationPolicy)
				}
				if deleted.Preconditions == nil || deleted.Preconditions.UID == nil || *deleted.Preconditions.UID != "u" {
					t.Errorf("preconditions %+v, want the job's UID", deleted.Preconditions)
				}
			}
		})
	}
}
