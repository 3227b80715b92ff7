package cronjob

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

var created = time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)

type fixture struct {
	t      *testing.T
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	c      *Controller
	events *record.FakeRecorder
}

func newFixture(t *testing.T, cj *batchv1.CronJob) *fixture {
	client := fake.NewClientset(cj)
	clk := clocktesting.NewFakeClock(created)
	c, err := New(Config{Workers: 1}, client, informers.NewSharedInformerFactory(client, 0), slog.New(slog.NewTextHandler(io.Discard, nil)), clk)
	if err != nil {
		t.Fatal(err)
	}
	ev := record.NewFakeRecorder(1000)
	c.events = ev
	// The fake clientset assigns no UIDs.
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		j.UID = types.UID("uid-" + j.Name)
		return false, nil, nil
	})
	f := &fixture{t: t, client: client, clock: clk, c: c, events: ev}
	f.refresh()
	return f
}

func (f *fixture) refresh() {
	ctx := context.Background()
	cjs, _ := f.client.BatchV1().CronJobs("").List(ctx, metav1.ListOptions{})
	var objs []any
	for i := range cjs.Items {
		objs = append(objs, &cjs.Items[i])
	}
	_ = f.c.cronJobs.GetIndexer().Replace(objs, "")
	jobs, _ := f.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	objs = nil
	for i := range jobs.Items {
		j := jobs.Items[i]
		s, _ := Transform(&j)
		objs = append(objs, s)
	}
	_ = f.c.jobs.GetIndexer().Replace(objs, "")
}

func (f *fixture) sync() time.Duration {
	f.t.Helper()
	res, err := f.c.sync(context.Background(), "ns/cj")
	if err != nil {
		f.t.Fatalf("sync: %v", err)
	}
	f.refresh()
	return res.RequeueAfter
}

func (f *fixture) jobs() []batchv1.Job {
	list, _ := f.client.BatchV1().Jobs("ns").List(context.Background(), metav1.ListOptions{})
	return list.Items
}

func (f *fixture) cronJob() *batchv1.CronJob {
	cj, err := f.client.BatchV1().CronJobs("ns").Get(context.Background(), "cj", metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return cj
}

func (f *fixture) reasons() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, strings.Fields(e)[1])
		default:
			return out
		}
	}
}

// finishJob marks job complete at the clock's time.
func (f *fixture) finishJob(name string, cond batchv1.JobConditionType) {
	j, err := f.client.BatchV1().Jobs("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	now := metav1.NewTime(f.clock.Now())
	j.Status.StartTime = &now
	j.Status.Conditions = append(j.Status.Conditions, batchv1.JobCondition{Type: cond, Status: v1.ConditionTrue, LastTransitionTime: now})
	if cond == batchv1.JobComplete {
		j.Status.CompletionTime = &now
	}
	if _, err := f.client.BatchV1().Jobs("ns").UpdateStatus(context.Background(), j, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func newCronJob(schedule string, mutate func(*batchv1.CronJob)) *batchv1.CronJob {
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "cj", Namespace: "ns", UID: "cj-uid", CreationTimestamp: metav1.NewTime(created)},
		Spec: batchv1.CronJobSpec{
			Schedule:                   schedule,
			ConcurrencyPolicy:          batchv1.AllowConcurrent,
			SuccessfulJobsHistoryLimit: ptr.To[int32](3),
			FailedJobsHistoryLimit:     ptr.To[int32](1),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "x"}},
				Spec: batchv1.JobSpec{Template: v1.PodTemplateSpec{Spec: v1.PodSpec{
					RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "c", Image: "busybox"}}}}},
			},
		},
	}
	if mutate != nil {
		mutate(cj)
	}
	return cj
}

func TestEveryMinute(t *testing.T) {
	f := newFixture(t, newCronJob("* * * * *", nil))
	wait := f.sync()
	if len(f.jobs()) != 0 || wait != 30*time.Second+nextScheduleDelta {
		t.Fatalf("before the first minute: %d jobs, requeue %v", len(f.jobs()), wait)
	}
	f.clock.Step(wait)
	wait = f.sync()
	jobs := f.jobs()
	if len(jobs) != 1 {
		t.Fatalf("%d jobs at 10:01, want 1", len(jobs))
	}
	j := jobs[0]
	sched := time.Date(2026, 3, 1, 10, 1, 0, 0, time.UTC)
	if want := fmt.Sprintf("cj-%d", sched.Unix()/60); j.Name != want {
		t.Errorf("job name %q, want %q", j.Name, want)
	}
	if a := j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; a != "2026-03-01T10:01:00Z" {
		t.Errorf("scheduled-timestamp annotation %q", a)
	}
	if j.Labels["app"] != "x" || !metav1.IsControlledBy(&j, f.cronJob()) {
		t.Errorf("job labels %v owners %v", j.Labels, j.OwnerReferences)
	}
	cj := f.cronJob()
	if len(cj.Status.Active) != 1 || cj.Status.LastScheduleTime == nil || !cj.Status.LastScheduleTime.Time.Equal(sched) {
		t.Errorf("status %+v", cj.Status)
	}
	if wait != time.Minute+nextScheduleDelta-nextScheduleDelta {
		// woke at 10:01:00.1, next at 10:02:00.1
		t.Errorf("requeue %v, want 1m", wait)
	}
	f.sync() // same minute: nothing new
	if len(f.jobs()) != 1 {
		t.Errorf("a second sync in the same minute made %d jobs", len(f.jobs()))
	}
	f.finishJob(j.Name, batchv1.JobComplete)
	f.sync()
	cj = f.cronJob()
	if len(cj.Status.Active) != 0 || cj.Status.LastSuccessfulTime == nil {
		t.Errorf("after completion: active %v lastSuccessfulTime %v", cj.Status.Active, cj.Status.LastSuccessfulTime)
	}
	if r := f.reasons(); !slices.Contains(r, "SuccessfulCreate") || !slices.Contains(r, "SawCompletedJob") {
		t.Errorf("events %v", r)
	}
}

func TestConcurrencyPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy     batchv1.ConcurrencyPolicy
		wantJobs   int
		wantActive int
		wantEvent  string
	}{
		{batchv1.AllowConcurrent, 2, 2, "SuccessfulCreate"},
		{batchv1.ForbidConcurrent, 1, 1, "JobAlreadyActive"},
		{batchv1.ReplaceConcurrent, 1, 1, "SuccessfulDelete"},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			f := newFixture(t, newCronJob("* * * * *", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = tc.policy }))
			f.clock.Step(f.sync())
			f.sync()
			first := f.jobs()[0].Name
			f.reasons()
			f.clock.Step(time.Minute)
			f.sync()
			jobs := f.jobs()
			if len(jobs) != tc.wantJobs || len(f.cronJob().Status.Active) != tc.wantActive {
				t.Fatalf("%d jobs, %d active; want %d and %d", len(jobs), len(f.cronJob().Status.Active), tc.wantJobs, tc.wantActive)
			}
			if tc.policy == batchv1.ReplaceConcurrent && jobs[0].Name == first {
				t.Error("Replace kept the old job")
			}
			if r := f.reasons(); !slices.Contains(r, tc.wantEvent) {
				t.Errorf("events %v, want %s", r, tc.wantEvent)
			}
		})
	}
}

func TestMissedSchedules(t *testing.T) {
	cases := []struct {
		name      string
		deadline  *int64
		skip      time.Duration
		wantJobs  int
		wantEvent string
	}{
		{"late but within the deadline starts the latest", ptr.To[int64](200), 3*time.Minute + 10*time.Second, 1, "SuccessfulCreate"},
		{"past the deadline is missed", ptr.To[int64](5), 3*time.Minute + 10*time.Second, 0, ""},
		{"over 100 missed are reported", nil, 200 * time.Minute, 1, "TooManyMissedTimes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, newCronJob("* * * * *", func(cj *batchv1.CronJob) { cj.Spec.StartingDeadlineSeconds = tc.deadline }))
			f.clock.Step(tc.skip)
			f.sync()
			jobs := f.jobs()
			if len(jobs) != tc.wantJobs {
				t.Fatalf("%d jobs, want %d", len(jobs), tc.wantJobs)
			}
			if tc.wantJobs == 1 {
				want := f.clock.Now().Truncate(time.Minute)
				if got := f.cronJob().Status.LastScheduleTime; got == nil || !got.Time.Equal(want) {
					t.Errorf("lastScheduleTime %v, want the most recent time %v", got, want)
				}
			}
			if r := f.reasons(); tc.wantEvent != "" && !slices.Contains(r, tc.wantEvent) {
				t.Errorf("events %v, want %s", r, tc.wantEvent)
			}
		})
	}
}

func TestTimeZoneAndSuspend(t *testing.T) {
	// 11:00:30 UTC is 12:00:30 in Berlin (CET): "0 12 * * *" there is due.
	f := newFixture(t, newCronJob("0 12 * * *", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = ptr.To("Europe/Berlin") }))
	f.clock.Step(time.Hour)
	f.sync()
	jobs := f.jobs()
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
	if a := jobs[0].Annotations[batchv1.CronJobScheduledTimestampAnnotation]; a != "2026-03-01T12:00:00+01:00" {
		t.Errorf("annotation %q, want the time in Europe/Berlin", a)
	}
	s := newFixture(t, newCronJob("* * * * *", func(cj *batchv1.CronJob) { cj.Spec.Suspend = ptr.To(true) }))
	s.clock.Step(5 * time.Minute)
	s.sync()
	if len(s.jobs()) != 0 {
		t.Errorf("a suspended CronJob started %d jobs", len(s.jobs()))
	}
	bad := newFixture(t, newCronJob("not a schedule", nil))
	bad.sync()
	if r := bad.reasons(); !slices.Contains(r, "UnparseableSchedule") {
		t.Errorf("events %v, want UnparseableSchedule", r)
	}
}

func TestHistoryLimits(t *testing.T) {
	f := newFixture(t, newCronJob("* * * * *", func(cj *batchv1.CronJob) {
		cj.Spec.SuccessfulJobsHistoryLimit = ptr.To[int32](2)
		cj.Spec.FailedJobsHistoryLimit = ptr.To[int32](0)
	}))
	f.clock.Step(f.sync())
	for i := 0; i < 4; i++ {
		f.sync()
		cond := batchv1.JobComplete
		if i == 3 {
			cond = batchv1.JobFailed
		}
		for _, j := range f.jobs() {
			if len(j.Status.Conditions) == 0 {
				f.finishJob(j.Name, cond)
			}
		}
		f.clock.Step(time.Minute)
	}
	f.sync()
	var complete, failed int
	for _, j := range f.jobs() {
		if c, ok := finished(&j); ok && c == batchv1.JobComplete {
			complete++
		} else if ok {
			failed++
		}
	}
	if complete != 2 || failed != 0 {
		t.Errorf("kept %d complete and %d failed jobs, want 2 and 0", complete, failed)
	}
}
