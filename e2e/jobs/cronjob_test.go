package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/e2e/harness"
)

// testCronJob: a CronJob every minute starts a Job at the next minute;
// with Forbid, the next minute is skipped (JobAlreadyActive) while that
// Job still runs; `kubectl create job --from=cronjob/x` starts one by hand.
func (c *cluster) testCronJob(t *testing.T) {
	ns := c.namespace(t, "cron")
	c.apply(t, ns, `apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: '* * * * *'
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: work
            image: `+c.busybox+`
            command: ['sleep', '150']
`)
	created := time.Now()
	var first batchv1.Job
	harness.Eventually(t, 150*time.Second, "the CronJob starts a Job", func() (bool, string) {
		list, err := c.client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			return false, "no job yet"
		}
		first = list.Items[0]
		return true, ""
	})
	t.Logf("first Job %s created %s after the CronJob", first.Name, time.Since(created).Round(time.Second))
	if !strings.HasPrefix(first.Name, "tick-") || first.Annotations[batchv1.CronJobScheduledTimestampAnnotation] == "" {
		t.Errorf("job %s annotations %v", first.Name, first.Annotations)
	}
	harness.Eventually(t, 150*time.Second, "Forbid skips the next run", func() (bool, string) {
		ev := c.events(t, ns, "tick")
		return ev["JobAlreadyActive"] > 0, "events so far: " + strings.Join(keys(ev), ",")
	})
	list, err := c.client.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("%d jobs while the first runs under Forbid, want 1", len(list.Items))
	}
	cj, err := c.client.BatchV1().CronJobs(ns).Get(context.Background(), "tick", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cj.Status.Active) != 1 || cj.Status.LastScheduleTime == nil {
		t.Errorf("status %+v, want one active Job and a lastScheduleTime", cj.Status)
	}
	c.server.MustKubectl(t, "-n", ns, "create", "job", "manual", "--from=cronjob/tick")
	manual, err := c.client.BatchV1().Jobs(ns).Get(context.Background(), "manual", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if manual.Annotations["cronjob.kubernetes.io/instantiate"] != "manual" || !metav1.IsControlledBy(manual, cj) {
		t.Errorf("manual job annotations %v owners %v", manual.Annotations, manual.OwnerReferences)
	}
	c.waitJob(t, ns, "manual", 2*time.Minute, "a pod running", func(j *batchv1.Job) bool { return j.Status.Active == 1 })

	r := c.server.KubectlIn(t, `apiVersion: batch/v1
kind: CronJob
metadata:
  name: tz
spec:
  schedule: 'CRON_TZ=UTC * * * * *'
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - name: work
            image: busybox
`, "apply", "-n", ns, "-f", "-")
	if r.ExitCode == 0 || !strings.Contains(r.Stderr, "use timeZone field instead") {
		t.Errorf("a CRON_TZ schedule was not refused: %s", r)
	}
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
