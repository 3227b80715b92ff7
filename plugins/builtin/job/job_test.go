package job

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
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

	"github.com/keelson/keelson/plugins/builtin/internal/freshness"
)

// fixture is a controller over a fake clientset whose caches are refreshed
// from the clientset between syncs, as an informer would catch up.
type fixture struct {
	t      *testing.T
	client *fake.Clientset
	clock  *clocktesting.FakeClock
	c      *Controller
	events *record.FakeRecorder
}

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, job *batchv1.Job) *fixture {
	t.Helper()
	client := fake.NewClientset(job)
	clk := clocktesting.NewFakeClock(t0)
	factory := informers.NewSharedInformerFactory(client, 0)
	c, err := New(Config{Workers: 1}, client, factory, slog.New(slog.NewTextHandler(io.Discard, nil)), clk)
	if err != nil {
		t.Fatal(err)
	}
	ev := record.NewFakeRecorder(1000)
	c.events = ev
	f := &fixture{t: t, client: client, clock: clk, c: c, events: ev}
	f.refresh()
	return f
}

// refresh replaces the caches' contents with the clientset's objects.
func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	jobs, err := f.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var objs []any
	for i := range jobs.Items {
		objs = append(objs, &jobs.Items[i])
	}
	if err := f.c.jobs.GetIndexer().Replace(objs, ""); err != nil {
		f.t.Fatal(err)
	}
	pods, err := f.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	objs = nil
	for i := range pods.Items {
		p := pods.Items[i]
		slim, _ := slimPod(&p)
		objs = append(objs, slim)
	}
	if err := f.c.pods.GetIndexer().Replace(objs, ""); err != nil {
		f.t.Fatal(err)
	}
}

// sync runs one reconcile of ns/name and refreshes the caches.
func (f *fixture) sync(name string) time.Duration {
	f.t.Helper()
	// The fake clientset assigns no names from generateName, and the
	// caches are refreshed wholesale: expectations would only delay.
	f.c.exp.Delete("ns/" + name)
	res, err := f.c.sync(context.Background(), "ns/"+name)
	if err != nil {
		f.t.Fatalf("sync: %v", err)
	}
	f.refresh()
	return res.RequeueAfter
}

func (f *fixture) job(name string) *batchv1.Job {
	f.t.Helper()
	j, err := f.client.BatchV1().Jobs("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) pods() []*v1.Pod {
	f.t.Helper()
	list, err := f.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*v1.Pod
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	return out
}

// setPhase plays the kubelet: it finishes pod with exit code (0:
// Succeeded) at the fake clock's time.
func (f *fixture) finish(p *v1.Pod, exitCode int32) {
	f.t.Helper()
	p.Status.Phase = v1.PodSucceeded
	if exitCode != 0 {
		p.Status.Phase = v1.PodFailed
	}
	p.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
		ExitCode: exitCode, FinishedAt: metav1.NewTime(f.clock.Now())}}}}
	if _, err := f.client.CoreV1().Pods(p.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	f.refresh()
}

func (f *fixture) eventReasons() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			var typ, reason string
			fmt.Sscan(e, &typ, &reason)
			out = append(out, reason)
		default:
			return out
		}
	}
}

// fakeNames gives pods created by the controller a name from their
// generateName, which the fake clientset does not do.
func fakeNames(client *fake.Clientset) {
	n := 0
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*v1.Pod)
		if p.Name == "" {
			n++
			p.Name = fmt.Sprintf("%s%05d", p.GenerateName, n)
			p.UID = types.UID(fmt.Sprintf("uid-%d", n))
		}
		return false, nil, nil
	})
}

func newJob(name string, mutate func(*batchv1.Job)) *batchv1.Job {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name + "-uid"), CreationTimestamp: metav1.NewTime(t0)},
		Spec: batchv1.JobSpec{
			Parallelism:  ptr.To[int32](1),
			Completions:  ptr.To[int32](1),
			BackoffLimit: ptr.To[int32](6),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{batchv1.ControllerUidLabel: name + "-uid"}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{batchv1.ControllerUidLabel: name + "-uid", batchv1.JobNameLabel: name}},
				Spec:       v1.PodSpec{RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	if mutate != nil {
		mutate(j)
	}
	return j
}

func indexed(completions, parallelism int32) func(*batchv1.Job) {
	return func(j *batchv1.Job) {
		j.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
		j.Spec.Completions = ptr.To(completions)
		j.Spec.Parallelism = ptr.To(parallelism)
	}
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) bool {
	c := findCondition(j, t)
	return c != nil && (reason == "" || c.Reason == reason)
}

func TestIndexedJobRunsEachIndexOnce(t *testing.T) {
	f := newFixture(t, newJob("ix", indexed(5, 2)))
	fakeNames(f.client)
	for round := 0; round < 20 && !isFinished(f.job("ix")); round++ {
		f.sync("ix")
		for _, p := range f.pods() {
			if p.Status.Phase == "" {
				f.finish(p, 0)
			}
		}
		if active := f.job("ix").Status.Active; active > 2 {
			t.Fatalf("round %d: %d active pods, parallelism is 2", round, active)
		}
	}
	j := f.job("ix")
	if !hasCondition(j, batchv1.JobComplete, batchv1.JobReasonCompletionsReached) || !hasCondition(j, batchv1.JobSuccessCriteriaMet, "") {
		t.Fatalf("conditions %+v, want SuccessCriteriaMet and Complete", j.Status.Conditions)
	}
	if j.Status.Succeeded != 5 || j.Status.CompletedIndexes != "0-4" || j.Status.CompletionTime == nil {
		t.Errorf("status succeeded=%d completedIndexes=%q completionTime=%v", j.Status.Succeeded, j.Status.CompletedIndexes, j.Status.CompletionTime)
	}
	seen := map[string]int{}
	for _, p := range f.pods() {
		ix := p.Annotations[batchv1.JobCompletionIndexAnnotation]
		seen[ix]++
		if p.Labels[batchv1.JobCompletionIndexAnnotation] != ix || p.Spec.Hostname != "ix-"+ix {
			t.Errorf("pod %s: label %q hostname %q for index %s", p.Name, p.Labels[batchv1.JobCompletionIndexAnnotation], p.Spec.Hostname, ix)
		}
		if env := p.Spec.Containers[0].Env; len(env) != 1 || env[0].Name != "JOB_COMPLETION_INDEX" {
			t.Errorf("pod %s: env %+v", p.Name, env)
		}
		if hasFinalizer(p) {
			t.Errorf("pod %s still holds the tracking finalizer", p.Name)
		}
	}
	for ix := 0; ix < 5; ix++ {
		if seen[fmt.Sprint(ix)] != 1 {
			t.Errorf("index %d ran %d times", ix, seen[fmt.Sprint(ix)])
		}
	}
	if r := f.eventReasons(); slices.Index(r, "Completed") < 0 || slices.Index(r, "SuccessfulCreate") < 0 {
		t.Errorf("events %v, want SuccessfulCreate and Completed", r)
	}
}

// TestStaleJobCacheCreatesNoDuplicate: the pod cache shows a counted pod's
// finalizer removed while the Job cache still holds the status from before
// the write that counted it (separate watches, no order between them); the
// sync must not take the pod's index for pending and run it again: the
// freshness guard holds it back until the Job cache has the write.
func TestStaleJobCacheCreatesNoDuplicate(t *testing.T) {
	f := newFixture(t, newJob("ix", indexed(4, 2)))
	fakeNames(f.client)
	rv := 1
	f.client.PrependReactor("update", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rv++
		a.(k8stesting.UpdateAction).GetObject().(*batchv1.Job).ResourceVersion = fmt.Sprint(rv)
		return false, nil, nil
	})
	f.sync("ix") // indexes 0 and 1
	byIndex := func(ix string) *v1.Pod {
		for _, p := range f.pods() {
			if p.Annotations[batchv1.JobCompletionIndexAnnotation] == ix {
				return p
			}
		}
		t.Fatalf("no pod for index %s", ix)
		return nil
	}
	f.finish(byIndex("0"), 0)
	staleJob, _, _ := f.c.jobs.GetIndexer().GetByKey("ns/ix")
	f.sync("ix") // counts index 0, releases its pod, starts index 2
	if got := f.job("ix").Status.CompletedIndexes; got != "0" {
		t.Fatalf("completedIndexes %q after counting index 0, want \"0\"", got)
	}
	// Index 1 finishes; the Job cache lags behind the write that counted 0.
	p1 := byIndex("1")
	p1.Status.Phase = v1.PodSucceeded
	if _, err := f.client.CoreV1().Pods("ns").UpdateStatus(context.Background(), p1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.refresh()
	if err := f.c.jobs.GetIndexer().Update(staleJob); err != nil {
		t.Fatal(err)
	}
	f.c.exp.Delete("ns/ix") // the informer would have seen index 2's pod
	_, err := f.c.sync(context.Background(), "ns/ix")
	if !freshness.IsStale(err) {
		t.Errorf("a sync on a Job cache older than the controller's write returned %v, want a freshness.StaleError (retried)", err)
	}
	count := map[string]int{}
	for _, p := range f.pods() {
		count[p.Annotations[batchv1.JobCompletionIndexAnnotation]]++
	}
	if count["0"] != 1 {
		t.Fatalf("index 0 has %d pods after a sync on a stale Job cache, want 1", count["0"])
	}
	// Once the cache has the write, the Job goes on: index 1 counted, 3 started.
	f.refresh()
	f.sync("ix")
	j := f.job("ix")
	if j.Status.CompletedIndexes != "0,1" {
		t.Errorf("completedIndexes %q, want \"0,1\"", j.Status.CompletedIndexes)
	}
	count = map[string]int{}
	for _, p := range f.pods() {
		count[p.Annotations[batchv1.JobCompletionIndexAnnotation]]++
	}
	if want := map[string]int{"0": 1, "1": 1, "2": 1, "3": 1}; !maps.Equal(count, want) {
		t.Errorf("pods per index %v, want %v", count, want)
	}
}
