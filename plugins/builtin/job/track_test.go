package job

import (
	"context"
	"slices"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// TestCountedOnceAcrossCrash: a controller that died after writing a
// pod's UID into uncountedTerminatedPods and removing its finalizer, but
// before moving it into the counters, is replaced by one that counts it
// exactly once; a pod already counted (no finalizer, not uncounted) is
// never counted again.
func TestCountedOnceAcrossCrash(t *testing.T) {
	cases := []struct {
		name          string
		finalizer     bool
		uncounted     bool
		phase         v1.PodPhase
		wantSucceeded int32
		wantFailed    int32
	}{
		{"finished, not yet recorded", true, false, v1.PodSucceeded, 1, 0},
		{"recorded, finalizer still there", true, true, v1.PodSucceeded, 1, 0},
		{"recorded, finalizer removed", false, true, v1.PodSucceeded, 1, 0},
		{"already counted", false, false, v1.PodSucceeded, 0, 0},
		{"failed, recorded, finalizer removed", false, true, v1.PodFailed, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			job := newJob("j", func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](2); j.Spec.Parallelism = ptr.To[int32](0) })
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "p-uid",
				Labels:          job.Spec.Template.Labels,
				OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, jobKind)}},
				Status: v1.PodStatus{Phase: tc.phase}}
			if tc.finalizer {
				pod.Finalizers = []string{batchv1.JobTrackingFinalizer}
			}
			job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
			if tc.uncounted {
				if tc.phase == v1.PodSucceeded {
					job.Status.UncountedTerminatedPods.Succeeded = []types.UID{pod.UID}
				} else {
					job.Status.UncountedTerminatedPods.Failed = []types.UID{pod.UID}
				}
			}
			f := newFixture(t, job)
			if _, err := f.client.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			f.refresh()
			for range 3 {
				f.sync("j")
			}
			st := f.job("j").Status
			if st.Succeeded != tc.wantSucceeded || st.Failed != tc.wantFailed {
				t.Errorf("succeeded=%d failed=%d, want %d and %d", st.Succeeded, st.Failed, tc.wantSucceeded, tc.wantFailed)
			}
			if u := st.UncountedTerminatedPods; u != nil && len(u.Succeeded)+len(u.Failed) > 0 {
				t.Errorf("still uncounted: %+v", u)
			}
		})
	}
}

// TestStaleJobCacheCannotDoubleCount: the status write is conditioned on
// the resourceVersion the sync read, so a sync working from a Job cache
// older than its own last write fails instead of counting a pod again.
func TestStaleJobCacheCannotDoubleCount(t *testing.T) {
	job := newJob("j", func(j *batchv1.Job) { j.Spec.Completions = ptr.To[int32](3) })
	f := newFixture(t, job)
	fakeNames(f.client)
	f.sync("j")
	p := f.pods()[0]
	f.finish(p, 0)
	stale, _, _ := f.c.jobs.GetIndexer().GetByKey("ns/j")
	f.sync("j") // records and counts the pod
	if got := f.job("j").Status.Succeeded; got != 1 {
		t.Fatalf("succeeded = %d after the first sync, want 1", got)
	}
	// Put the pre-count Job back in the cache, and the pod as it was.
	_ = f.c.jobs.GetIndexer().Update(stale)
	old := p.DeepCopy()
	old.Finalizers = []string{batchv1.JobTrackingFinalizer}
	slim, _ := slimPod(old)
	_ = f.c.pods.GetIndexer().Update(slim)
	f.c.exp.Delete("ns/j")
	_, _ = f.c.sync(context.Background(), "ns/j")
	if got := f.job("j").Status.Succeeded; got != 1 {
		t.Fatalf("succeeded = %d after a sync from a stale cache, want 1", got)
	}
}

func TestBackoffLimitExceeded(t *testing.T) {
	f := newFixture(t, newJob("j", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr.To[int32](1) }))
	fakeNames(f.client)
	var waits []time.Duration
	for round := 0; round < 10 && !isFinished(f.job("j")); round++ {
		if wait := f.sync("j"); wait > 0 {
			waits = append(waits, wait)
			f.clock.Step(wait)
			continue
		}
		for _, p := range f.pods() {
			if p.Status.Phase == "" {
				f.finish(p, 1)
			}
		}
	}
	j := f.job("j")
	if !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded) || !hasCondition(j, batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded) {
		t.Fatalf("conditions %+v, want FailureTarget and Failed with BackoffLimitExceeded", j.Status.Conditions)
	}
	if j.Status.Failed != 2 || len(f.pods()) != 2 {
		t.Errorf("failed=%d with %d pods, want 2 and 2 (backoffLimit 1)", j.Status.Failed, len(f.pods()))
	}
	if len(waits) == 0 || waits[0] != 10*time.Second {
		t.Errorf("waits before replacing a failed pod: %v, want 10s first", waits)
	}
	if r := f.eventReasons(); !slices.Contains(r, "BackoffLimitExceeded") {
		t.Errorf("events %v, want BackoffLimitExceeded", r)
	}
}

func TestBackoffDelay(t *testing.T) {
	for _, tc := range []struct {
		failures int32
		want     time.Duration
	}{{0, 0}, {1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {6, 320 * time.Second}, {7, 6 * time.Minute}, {50, 6 * time.Minute}} {
		if got := backoffDelay(tc.failures); got != tc.want {
			t.Errorf("backoffDelay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func exitPolicy(action batchv1.PodFailurePolicyAction, code int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
			Action:      action,
			OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{code}},
		}}}
		j.Spec.BackoffLimit = ptr.To[int32](0)
	}
}

func TestPodFailurePolicy(t *testing.T) {
	cases := []struct {
		name       string
		action     batchv1.PodFailurePolicyAction
		exit       int32
		wantFailed int32
		wantReason string
	}{
		{"ignore exit 42 then succeed", batchv1.PodFailurePolicyActionIgnore, 42, 0, ""},
		{"fail job on exit 42", batchv1.PodFailurePolicyActionFailJob, 42, 1, batchv1.JobReasonPodFailurePolicy},
		{"count other exit codes", batchv1.PodFailurePolicyActionIgnore, 3, 1, batchv1.JobReasonBackoffLimitExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newJob("j", exitPolicy(tc.action, 42)))
			fakeNames(f.client)
			f.sync("j")
			f.finish(f.pods()[0], tc.exit)
			for round := 0; round < 6 && !isFinished(f.job("j")); round++ {
				if wait := f.sync("j"); wait > 0 {
					f.clock.Step(wait) // the failure backoff, ignored failures included
				}
				for _, p := range f.pods() {
					if p.Status.Phase == "" {
						f.finish(p, 0)
					}
				}
			}
			j := f.job("j")
			if j.Status.Failed != tc.wantFailed {
				t.Errorf("failed = %d, want %d", j.Status.Failed, tc.wantFailed)
			}
			if tc.wantReason == "" {
				if !hasCondition(j, batchv1.JobComplete, "") || j.Status.Succeeded != 1 {
					t.Errorf("conditions %+v succeeded %d, want Complete after the ignored failure", j.Status.Conditions, j.Status.Succeeded)
				}
				return
			}
			c := findCondition(j, batchv1.JobFailed)
			if c == nil || c.Reason != tc.wantReason {
				t.Fatalf("conditions %+v, want Failed %s", j.Status.Conditions, tc.wantReason)
			}
			if tc.wantReason == batchv1.JobReasonPodFailurePolicy && c.Message == "" {
				t.Error("FailJob condition has no message")
			}
		})
	}
}

func TestActiveDeadline(t *testing.T) {
	f := newFixture(t, newJob("j", func(j *batchv1.Job) { j.Spec.ActiveDeadlineSeconds = ptr.To[int64](30) }))
	fakeNames(f.client)
	if wait := f.sync("j"); wait != 30*time.Second {
		t.Fatalf("requeue after %v, want 30s (the deadline)", wait)
	}
	f.clock.Step(31 * time.Second)
	f.sync("j") // FailureTarget, and the running pod deleted
	if n := len(f.pods()); n != 0 {
		t.Fatalf("%d pods left past the deadline", n)
	}
	f.sync("j")
	j := f.job("j")
	if !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonDeadlineExceeded) {
		t.Fatalf("conditions %+v, want Failed DeadlineExceeded", j.Status.Conditions)
	}
}

func TestSuspendAndResume(t *testing.T) {
	f := newFixture(t, newJob("j", func(j *batchv1.Job) { j.Spec.Parallelism = ptr.To[int32](2); j.Spec.Completions = ptr.To[int32](4) }))
	fakeNames(f.client)
	f.sync("j")
	if n := len(f.pods()); n != 2 {
		t.Fatalf("%d pods, want 2", n)
	}
	j := f.job("j")
	started := j.Status.StartTime
	j.Spec.Suspend = ptr.To(true)
	if _, err := f.client.BatchV1().Jobs("ns").Update(context.Background(), j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.sync("j")
	j = f.job("j")
	if n := len(f.pods()); n != 0 || !hasCondition(j, batchv1.JobSuspended, "JobSuspended") || j.Status.Active != 0 {
		t.Fatalf("suspended: %d pods, active %d, conditions %+v", n, j.Status.Active, j.Status.Conditions)
	}
	if j.Status.Failed != 0 {
		t.Errorf("suspending counted %d failures", j.Status.Failed)
	}
	f.clock.Step(time.Minute)
	j.Spec.Suspend = ptr.To(false)
	if _, err := f.client.BatchV1().Jobs("ns").Update(context.Background(), j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	f.sync("j")
	j = f.job("j")
	c := j.Status.Conditions[0]
	if c.Type != batchv1.JobSuspended || c.Status != v1.ConditionFalse || c.Reason != "JobResumed" {
		t.Errorf("condition %+v, want Suspended=False JobResumed", c)
	}
	if j.Status.StartTime == nil || !j.Status.StartTime.After(started.Time) || len(f.pods()) != 2 {
		t.Errorf("resumed: startTime %v (was %v), %d pods", j.Status.StartTime, started, len(f.pods()))
	}
}

func TestBackoffLimitPerIndex(t *testing.T) {
	f := newFixture(t, newJob("j", func(j *batchv1.Job) {
		indexed(2, 2)(j)
		j.Spec.BackoffLimitPerIndex = ptr.To[int32](1)
		j.Spec.BackoffLimit = ptr.To[int32](1 << 30)
	}))
	fakeNames(f.client)
	for round := 0; round < 12 && !isFinished(f.job("j")); round++ {
		if wait := f.sync("j"); wait > 0 {
			f.clock.Step(wait)
		}
		for _, p := range f.pods() {
			if p.Status.Phase == "" {
				code := int32(0)
				if completionIndex(p) == 1 {
					code = 1 // index 1 always fails
				}
				f.finish(p, code)
			}
		}
	}
	j := f.job("j")
	if !hasCondition(j, batchv1.JobFailed, batchv1.JobReasonFailedIndexes) {
		t.Fatalf("conditions %+v, want Failed FailedIndexes", j.Status.Conditions)
	}
	if j.Status.FailedIndexes == nil || *j.Status.FailedIndexes != "1" || j.Status.CompletedIndexes != "0" {
		t.Errorf("failedIndexes %v completedIndexes %q", j.Status.FailedIndexes, j.Status.CompletedIndexes)
	}
	counts := map[string]bool{}
	for _, p := range f.pods() {
		if completionIndex(p) == 1 {
			counts[p.Annotations[batchv1.JobIndexFailureCountAnnotation]] = true
		}
	}
	if !counts["0"] || !counts["1"] || len(counts) != 2 {
		t.Errorf("index 1 failure counts %v, want pods with 0 and 1", counts)
	}
}

func TestSuccessPolicy(t *testing.T) {
	f := newFixture(t, newJob("j", func(j *batchv1.Job) {
		indexed(3, 3)(j)
		j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{{SucceededIndexes: ptr.To("0")}}}
	}))
	fakeNames(f.client)
	f.sync("j")
	for _, p := range f.pods() {
		if completionIndex(p) == 0 {
			f.finish(p, 0)
		}
	}
	for range 3 {
		f.sync("j")
	}
	j := f.job("j")
	if !hasCondition(j, batchv1.JobSuccessCriteriaMet, batchv1.JobReasonSuccessPolicy) || !hasCondition(j, batchv1.JobComplete, batchv1.JobReasonSuccessPolicy) {
		t.Fatalf("conditions %+v, want SuccessCriteriaMet and Complete by SuccessPolicy", j.Status.Conditions)
	}
	if len(f.pods()) != 1 {
		t.Errorf("%d pods left, want only the succeeded one (the others deleted)", len(f.pods()))
	}
}

func TestIntervals(t *testing.T) {
	for _, tc := range []struct {
		in          string
		completions int
		add         []int
		want        string
		total       int
	}{
		{"", 10, nil, "", 0},
		{"1,3-5", 10, []int{2}, "1-5", 5},
		{"0-2,7", 5, []int{9, 4}, "0-2,4,9", 5}, // with adds what it is given
		{"x,3-1,2", 10, []int{2, 2}, "2", 1},
		// Two in a row are listed, three or more a range (upstream's form).
		{"", 10, []int{1, 0}, "0,1", 2},
		{"0,1", 10, []int{5, 6, 8}, "0,1,5,6,8", 5},
		{"0,1,5,6", 10, []int{2, 7}, "0-2,5-7", 6},
	} {
		got := parseIntervals(tc.in, tc.completions).with(tc.add)
		if got.String() != tc.want || got.total() != tc.total {
			t.Errorf("%q + %v = %q (%d), want %q (%d)", tc.in, tc.add, got.String(), got.total(), tc.want, tc.total)
		}
	}
}
