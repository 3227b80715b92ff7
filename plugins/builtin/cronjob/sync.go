package cronjob

import (
	"context"
	"fmt"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// finished returns the condition that ended j, if any.
func finished(j *batchv1.Job) (batchv1.JobConditionType, bool) {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.Type, true
		}
	}
	return "", false
}

func inActive(cj *batchv1.CronJob, uid types.UID) bool {
	for _, r := range cj.Status.Active {
		if r.UID == uid {
			return true
		}
	}
	return false
}

func removeActive(cj *batchv1.CronJob, uid types.UID) {
	var keep []corev1.ObjectReference
	for _, r := range cj.Status.Active {
		if r.UID != uid {
			keep = append(keep, r)
		}
	}
	cj.Status.Active = keep
}

// syncCronJob edits cj's status (returning whether it changed), starts the
// Job due now if any, and returns how long until the next look.
func (c *Controller) syncCronJob(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) (time.Duration, bool, error) {
	changed, err := c.reconcileActive(ctx, cj, jobs)
	if err != nil {
		return 0, changed, err
	}
	if cj.DeletionTimestamp != nil {
		return 0, changed, nil
	}
	if tz := cj.Spec.TimeZone; tz != nil {
		if _, err := time.LoadLocation(*tz); err != nil {
			c.events.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return 0, changed, nil
		}
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		return 0, changed, nil
	}
	spec := scheduleSpec(cj)
	if spec == cj.Spec.Schedule && cj.Spec.TimeZone == nil && containsTZ(spec) {
		c.events.Eventf(cj, corev1.EventTypeWarning, "UnsupportedSchedule", "CRON_TZ or TZ used in schedule %q is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details", cj.Spec.Schedule)
	}
	sched, err := parseSchedule(spec)
	if err != nil {
		c.events.Eventf(cj, corev1.EventTypeWarning, "UnparseableSchedule", "unparseable schedule: %q : %s", cj.Spec.Schedule, err)
		return 0, changed, nil
	}
	now := c.now()
	_, due, tooMany, err := mostRecent(cj, now, sched, true)
	if err != nil {
		c.events.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %s : %s", cj.Spec.Schedule, err)
		return 0, changed, nil
	}
	if due == nil || due.After(now) {
		return untilNext(cj, now, sched), changed, nil
	}
	if tooMany {
		c.events.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes", "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew")
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && due.Add(time.Duration(*d)*time.Second).Before(now) {
		c.events.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", due.UTC().Format(time.RFC1123Z))
		return untilNext(cj, now, sched), changed, nil
	}
	name := jobName(cj, *due)
	if activeByName(cj, name) || (cj.Status.LastScheduleTime != nil && cj.Status.LastScheduleTime.Time.Equal(*due)) {
		return untilNext(cj, now, sched), changed, nil // already started
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent && len(cj.Status.Active) > 0 {
		c.events.Eventf(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
		return untilNext(cj, now, sched), changed, nil
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ReplaceConcurrent {
		for _, r := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
			if err := c.deleteJob(ctx, cj, r.Name, r.UID); err != nil {
				return 0, changed, fmt.Errorf("could not replace job %s/%s: %w", r.Namespace, r.Name, err)
			}
			removeActive(cj, r.UID)
			changed = true
		}
	}
	started, err := c.startJob(ctx, cj, *due)
	if err != nil || started == nil {
		return 0, changed, err
	}
	cj.Status.Active = append(cj.Status.Active, corev1.ObjectReference{
		Kind: "Job", Namespace: started.Namespace, Name: started.Name, UID: started.UID,
		APIVersion: batchv1.SchemeGroupVersion.String(), ResourceVersion: started.ResourceVersion,
	})
	cj.Status.LastScheduleTime = &metav1.Time{Time: *due}
	return untilNext(cj, now, sched), true, nil
}

func containsTZ(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == 'T' && s[i+1] == 'Z' {
			return true
		}
	}
	return false
}

func activeByName(cj *batchv1.CronJob, name string) bool {
	for _, r := range cj.Status.Active {
		if r.Name == name {
			return true
		}
	}
	return false
}

// reconcileActive keeps status.active to the CronJob's running Jobs and
// lastSuccessfulTime to its latest completion.
func (c *Controller) reconcileActive(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) (bool, error) {
	changed := false
	children := map[types.UID]bool{}
	for _, j := range jobs {
		children[j.UID] = true
		cond, done := finished(j)
		found := inActive(cj, j.UID)
		if !found && !done {
			fresh, err := c.client.BatchV1().CronJobs(cj.Namespace).Get(ctx, cj.Name, metav1.GetOptions{})
			if err != nil {
				return changed, fmt.Errorf("re-reading cronjob %s/%s: %w", cj.Namespace, cj.Name, err)
			}
			if inActive(fresh, j.UID) {
				*cj = *fresh // our cache lagged behind our own status write
				continue
			}
			c.events.Eventf(cj, corev1.EventTypeWarning, "UnexpectedJob", "Saw a job that the controller did not create or forgot: %s", j.Name)
			continue
		}
		if !done {
			continue
		}
		if found {
			removeActive(cj, j.UID)
			c.events.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, condition: %v", j.Name, cond)
			changed = true
		}
		if cond == batchv1.JobComplete && j.Status.CompletionTime != nil {
			if last := cj.Status.LastSuccessfulTime; last == nil || j.Status.CompletionTime.After(last.Time) {
				cj.Status.LastSuccessfulTime = j.Status.CompletionTime
				changed = true
			}
		}
	}
	for _, r := range append([]corev1.ObjectReference(nil), cj.Status.Active...) {
		if children[r.UID] {
			continue
		}
		// The cache may lag: ask the API server before dropping it.
		_, err := c.client.BatchV1().Jobs(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			c.events.Eventf(cj, corev1.EventTypeNormal, "MissingJob", "Active job went missing: %v", r.Name)
			removeActive(cj, r.UID)
			changed = true
		case err != nil:
			return changed, fmt.Errorf("reading job %s/%s: %w", r.Namespace, r.Name, err)
		}
	}
	return changed, nil
}

// startJob creates the Job for scheduled. A Job of that name that already
// exists is this controller's own earlier creation (returned, so the
// status records it) unless another owner controls it (nil).
func (c *Controller) startJob(ctx context.Context, cj *batchv1.CronJob, scheduled time.Time) (*batchv1.Job, error) {
	req, err := jobFor(cj, scheduled)
	if err != nil {
		return nil, err
	}
	created, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, req, metav1.CreateOptions{})
	switch {
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil, err
	case apierrors.IsAlreadyExists(err):
		existing, err := c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, req.Name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading existing job %s/%s: %w", cj.Namespace, req.Name, err)
		}
		if !metav1.IsControlledBy(existing, cj) || inActive(cj, existing.UID) {
			return nil, nil
		}
		return existing, nil
	case err != nil:
		c.events.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return nil, fmt.Errorf("creating job %s/%s: %w", cj.Namespace, req.Name, err)
	}
	c.events.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	return created, nil
}

// jobFor is the Job the CronJob starts at scheduled: its template, its
// deterministic name, and the scheduled time (in the CronJob's time zone)
// in the batch.kubernetes.io/cronjob-scheduled-timestamp annotation.
func jobFor(cj *batchv1.CronJob, scheduled time.Time) (*batchv1.Job, error) {
	loc := time.UTC
	if cj.Spec.TimeZone != nil {
		var err error
		if loc, err = time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			return nil, fmt.Errorf("cronjob %s/%s: spec.timeZone %q: %w", cj.Namespace, cj.Name, *cj.Spec.TimeZone, err)
		}
	}
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{
		Name: jobName(cj, scheduled), Namespace: cj.Namespace,
		Labels: map[string]string{}, Annotations: map[string]string{},
		OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, cronJobKind)},
	}}
	for k, v := range cj.Spec.JobTemplate.Labels {
		j.Labels[k] = v
	}
	for k, v := range cj.Spec.JobTemplate.Annotations {
		j.Annotations[k] = v
	}
	j.Annotations[batchv1.CronJobScheduledTimestampAnnotation] = scheduled.In(loc).Format(time.RFC3339)
	cj.Spec.JobTemplate.Spec.DeepCopyInto(&j.Spec)
	return j, nil
}

func (c *Controller) deleteJob(ctx context.Context, cj *batchv1.CronJob, name string, uid types.UID) error {
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(cj.Namespace).Delete(ctx, name, metav1.DeleteOptions{
		PropagationPolicy: &bg, Preconditions: metav1.NewUIDPreconditions(string(uid)),
	})
	if err != nil && !apierrors.IsNotFound(err) {
		c.events.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("deleting job %s/%s: %w", cj.Namespace, name, err)
	}
	c.events.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", name)
	return nil
}

// cleanupFinished deletes the oldest finished Jobs beyond the successful
// (default 3) and failed (default 1) history limits.
func (c *Controller) cleanupFinished(ctx context.Context, cj *batchv1.CronJob, jobs []*batchv1.Job) error {
	if cj.DeletionTimestamp != nil || (cj.Spec.SuccessfulJobsHistoryLimit == nil && cj.Spec.FailedJobsHistoryLimit == nil) {
		return nil
	}
	var ok, failed []*batchv1.Job
	for _, j := range jobs {
		if j.DeletionTimestamp != nil {
			continue
		}
		switch cond, _ := finished(j); cond {
		case batchv1.JobComplete:
			ok = append(ok, j)
		case batchv1.JobFailed:
			failed = append(failed, j)
		}
	}
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{ok, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		sort.SliceStable(set.jobs, func(a, b int) bool { return startedBefore(set.jobs[a], set.jobs[b]) })
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			if err := c.deleteJob(ctx, cj, j.Name, j.UID); err != nil {
				return err
			}
		}
	}
	return nil
}

// startedBefore orders Jobs by start time (unstarted last), then name.
func startedBefore(a, b *batchv1.Job) bool {
	switch {
	case a.Status.StartTime == nil && b.Status.StartTime == nil:
		return a.Name < b.Name
	case a.Status.StartTime == nil:
		return false
	case b.Status.StartTime == nil:
		return true
	case a.Status.StartTime.Equal(b.Status.StartTime):
		return a.Name < b.Name
	}
	return a.Status.StartTime.Before(b.Status.StartTime)
}
