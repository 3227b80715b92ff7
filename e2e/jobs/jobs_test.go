package jobs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// TestJobs runs the scenarios of issue 17 on one server with its agent.
func TestJobs(t *testing.T) {
	c := startCluster(t)
	t.Run("IndexedJob", c.testIndexedJob)
	t.Run("BackoffLimitExceeded", c.testBackoffLimit)
	t.Run("PodFailurePolicyIgnore", c.testPodFailurePolicyIgnore)
	t.Run("TTLAfterFinished", c.testTTL)
	t.Run("CronJob", c.testCronJob)
}

// testIndexedJob: 10 completions, parallelism 3; every index runs exactly
// once, with its index in JOB_COMPLETION_INDEX and its hostname.
func (c *cluster) testIndexedJob(t *testing.T) {
	ns := c.namespace(t, "indexed")
	c.apply(t, ns, `apiVersion: batch/v1
kind: Job
metadata:
  name: ix
spec:
  completionMode: Indexed
  completions: 10
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: `+c.busybox+`
        command: ['sh', '-c', 'echo "index $JOB_COMPLETION_INDEX host $(hostname)"']
`)
	j := c.waitJob(t, ns, "ix", 6*time.Minute, "Complete", func(j *batchv1.Job) bool {
		return condition(j, batchv1.JobComplete) != nil || condition(j, batchv1.JobFailed) != nil
	})
	if condition(j, batchv1.JobComplete) == nil || condition(j, batchv1.JobSuccessCriteriaMet) == nil {
		t.Fatalf("conditions %+v, want SuccessCriteriaMet and Complete", j.Status.Conditions)
	}
	if j.Status.Succeeded != 10 || j.Status.Failed != 0 || j.Status.CompletedIndexes != "0-9" {
		t.Errorf("status succeeded=%d failed=%d completedIndexes=%q", j.Status.Succeeded, j.Status.Failed, j.Status.CompletedIndexes)
	}
	pods := c.jobPods(t, ns, "ix")
	seen := map[string]int{}
	for _, p := range pods {
		seen[p.Annotations[batchv1.JobCompletionIndexAnnotation]]++
		if len(p.Finalizers) != 0 {
			t.Errorf("pod %s still has finalizers %v", p.Name, p.Finalizers)
		}
		if p.Status.Phase != v1.PodSucceeded {
			t.Errorf("pod %s is %s", p.Name, p.Status.Phase)
		}
	}
	for ix := 0; ix < 10; ix++ {
		if n := seen[fmt.Sprint(ix)]; n != 1 {
			t.Errorf("index %d ran %d times", ix, n)
		}
	}
	if len(pods) != 10 {
		t.Errorf("%d pods, want 10", len(pods))
	}
	out := c.server.MustKubectl(t, "-n", ns, "logs", "-l", "batch.kubernetes.io/job-completion-index=7")
	if strings.TrimSpace(out) != "index 7 host ix-7" {
		t.Errorf("logs of index 7: %q", out)
	}
	if ev := c.events(t, ns, "ix"); ev["SuccessfulCreate"] < 10 || ev["Completed"] != 1 {
		t.Errorf("events %v, want 10 SuccessfulCreate and one Completed", ev)
	}
}

// testBackoffLimit: a Job whose pod always fails stops after backoffLimit
// retries with BackoffLimitExceeded.
func (c *cluster) testBackoffLimit(t *testing.T) {
	ns := c.namespace(t, "backoff")
	c.apply(t, ns, `apiVersion: batch/v1
kind: Job
metadata:
  name: fails
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: `+c.busybox+`
        command: ['sh', '-c', 'exit 3']
`)
	j := c.waitJob(t, ns, "fails", 4*time.Minute, "Failed", func(j *batchv1.Job) bool { return condition(j, batchv1.JobFailed) != nil })
	if cond := condition(j, batchv1.JobFailed); cond.Reason != batchv1.JobReasonBackoffLimitExceeded {
		t.Errorf("Failed reason %q, want BackoffLimitExceeded", cond.Reason)
	}
	if j.Status.Failed != 2 || j.Status.Active != 0 {
		t.Errorf("failed=%d active=%d, want 2 and 0", j.Status.Failed, j.Status.Active)
	}
	if n := len(c.jobPods(t, ns, "fails")); n != 2 {
		t.Errorf("%d pods, want 2 (one try and one retry)", n)
	}
	if ev := c.events(t, ns, "fails"); ev["BackoffLimitExceeded"] != 1 {
		t.Errorf("events %v, want BackoffLimitExceeded", ev)
	}
}

// testPodFailurePolicyIgnore: exit code 42 is ignored (not counted against
// a backoff limit of 0) and the pod replaced. The replacement sees the
// ignored failure in its batch.kubernetes.io/job-index-ignored-failure-count
// annotation and succeeds.
func (c *cluster) testPodFailurePolicyIgnore(t *testing.T) {
	ns := c.namespace(t, "pfp")
	c.apply(t, ns, `apiVersion: batch/v1
kind: Job
metadata:
  name: ignore42
spec:
  completionMode: Indexed
  completions: 1
  backoffLimitPerIndex: 0
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes:
        operator: In
        values: [42]
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: `+c.busybox+`
        command: ['sh', '-c', 'if [ -z "$IGNORED" ]; then exit 42; fi; echo "retried after $IGNORED ignored"']
        env:
        - name: IGNORED
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['batch.kubernetes.io/job-index-ignored-failure-count']
`)
	j := c.waitJob(t, ns, "ignore42", 4*time.Minute, "finished", func(j *batchv1.Job) bool {
		return condition(j, batchv1.JobComplete) != nil || condition(j, batchv1.JobFailed) != nil
	})
	if condition(j, batchv1.JobComplete) == nil {
		t.Fatalf("conditions %+v, want Complete", j.Status.Conditions)
	}
	if j.Status.Failed != 0 || j.Status.Succeeded != 1 {
		t.Errorf("failed=%d succeeded=%d, want 0 and 1 (exit 42 ignored)", j.Status.Failed, j.Status.Succeeded)
	}
	if n := len(c.jobPods(t, ns, "ignore42")); n != 2 {
		t.Errorf("%d pods, want 2", n)
	}
}

// testTTL: finished Jobs with ttlSecondsAfterFinished 0 and 5 are deleted,
// with their pods.
func (c *cluster) testTTL(t *testing.T) {
	ns := c.namespace(t, "ttl")
	for _, ttl := range []int{0, 5} {
		c.apply(t, ns, fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: ttl%d
spec:
  ttlSecondsAfterFinished: %d
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: %s
        command: ['true']
`, ttl, ttl, c.busybox))
	}
	for _, ttl := range []int{0, 5} {
		name := fmt.Sprintf("ttl%d", ttl)
		harness.Eventually(t, 4*time.Minute, "job "+name+" and its pods deleted", func() (bool, string) {
			_, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), name, metav1.GetOptions{})
			if !apierrors.IsNotFound(err) {
				return false, fmt.Sprint("job: ", err)
			}
			pods := c.jobPods(t, ns, name)
			return len(pods) == 0, fmt.Sprintf("%d pods left", len(pods))
		})
	}
}
