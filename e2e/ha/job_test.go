package ha

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/e2e/podready"
)

const (
	jobNamespace   = "default"
	jobCompletions = 30
)

// TestJobSurvivesLeaderKill runs an Indexed Job (30 completions, 5 at a
// time) on a 3-server cluster whose pods the test completes itself (no
// nodes), and kills the raft leader, which runs the job plugin, after a
// third of them: the new leader's job plugin finishes the Job with every
// index completed once, counts no completion twice or never, and creates
// no pod beyond the 30 (none failed, so none needed replacing).
func TestJobSurvivesLeaderKill(t *testing.T) {
	c := NewCluster(t, Options{APIServer: true})
	clients := make([]kubernetes.Interface, len(c.Servers))
	for i, s := range c.Servers {
		clients[i] = s.Clientset(t)
	}
	api := &anyServer{c: c, clients: clients}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "indexed"},
		Spec: batchv1.JobSpec{
			Completions: ptr.To[int32](jobCompletions), Parallelism: ptr.To[int32](5),
			CompletionMode: ptr.To(batchv1.IndexedCompletion), BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "work", Image: "registry.invalid/work:1"}}}},
		},
	}
	api.eventually(t, ctx, "the job created", func(cs kubernetes.Interface) error {
		_, err := cs.BatchV1().Jobs(jobNamespace).Create(ctx, job, metav1.CreateOptions{})
		return err
	})
	comp := &completer{seen: map[types.UID]string{}}
	go comp.run(ctx, api)

	api.eventually(t, ctx, "a third of the completions", func(cs kubernetes.Interface) error {
		j, err := cs.BatchV1().Jobs(jobNamespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err == nil && j.Status.Succeeded < jobCompletions/3 {
			err = fmt.Errorf("%d succeeded", j.Status.Succeeded)
		}
		return err
	})
	fault := Scenario{Hold: 5 * time.Second}.inject(t, c, &KillLeader{})

	var final *batchv1.Job
	api.eventually(t, ctx, "the job complete", func(cs kubernetes.Interface) error {
		j, err := cs.BatchV1().Jobs(jobNamespace).Get(ctx, job.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range j.Status.Conditions {
			if cond.Type == batchv1.JobComplete && cond.Status == corev1.ConditionTrue {
				final = j
				return nil
			}
		}
		return fmt.Errorf("succeeded %d, active %d, completed indexes %q", j.Status.Succeeded, j.Status.Active, j.Status.CompletedIndexes)
	})
	cancel()
	st := final.Status
	if st.Succeeded != jobCompletions || st.Failed != 0 || st.CompletedIndexes != fmt.Sprintf("0-%d", jobCompletions-1) {
		t.Errorf("job status: succeeded %d, failed %d, completed indexes %q; want %d, 0, 0-%d",
			st.Succeeded, st.Failed, st.CompletedIndexes, jobCompletions, jobCompletions-1)
	}
	perIndex := comp.perIndex()
	for i := range jobCompletions {
		if n := perIndex[fmt.Sprint(i)]; n != 1 {
			t.Errorf("index %d had %d pods, want exactly 1", i, n)
		}
	}
	if n := comp.count(); n != jobCompletions {
		t.Errorf("%d pods created for %d completions, want no extra pod", n, jobCompletions)
	}
	t.Logf("SCENARIO %s: %s\n  faults: %s\n  job: succeeded %d, completed indexes %s, %d pods created",
		t.Name(), passFail(t), fault, st.Succeeded, st.CompletedIndexes, comp.count())
}

// anyServer sends a request to the servers in turn until one answers.
type anyServer struct {
	c       *Cluster
	clients []kubernetes.Interface
}

func (a *anyServer) do(f func(kubernetes.Interface) error) error {
	var err error
	for i, s := range a.c.Servers {
		if !s.Running() {
			continue
		}
		if err = f(a.clients[i]); err == nil {
			return nil
		}
	}
	if err == nil {
		err = fmt.Errorf("no server running")
	}
	return err
}

func (a *anyServer) eventually(t *testing.T, ctx context.Context, what string, f func(kubernetes.Interface) error) {
	t.Helper()
	for {
		err := a.do(f)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// completer plays the kubelet of nodes that do not exist: every pod of the
// namespace that is not finished is marked Succeeded, its container
// terminated with exit code 0. It records every pod it saw and its index.
type completer struct {
	mu   sync.Mutex
	seen map[types.UID]string // pod -> completion index
}

func (c *completer) run(ctx context.Context, api *anyServer) {
	for ctx.Err() == nil {
		_ = api.do(func(cs kubernetes.Interface) error {
			list, err := cs.CoreV1().Pods(jobNamespace).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=indexed"})
			if err != nil {
				return err
			}
			for i := range list.Items {
				p := &list.Items[i]
				c.mu.Lock()
				c.seen[p.UID] = p.Annotations[batchv1.JobCompletionIndexAnnotation]
				c.mu.Unlock()
				if p.Status.Phase != corev1.PodSucceeded && p.DeletionTimestamp == nil {
					if err := podready.MarkSucceeded(ctx, cs, p); err != nil {
						return err
					}
				}
			}
			return nil
		})
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *completer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *completer) perIndex() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, idx := range c.seen {
		out[idx]++
	}
	return out
}
