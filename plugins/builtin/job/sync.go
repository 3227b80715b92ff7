package job

import (
	"context"
	"errors"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
	"github.com/keelson/keelson/plugins/sdk"
)

// jobControllerName is the spec.managedBy value (or its absence) that
// leaves a Job to this controller.
const jobControllerName = "kubernetes.io/job-controller"

// state is one sync's view of a Job: its pods and the counts and decisions
// derived from them. job is a private copy whose status the sync edits.
type state struct {
	job         *batchv1.Job
	key         string
	pods        []*v1.Pod
	active      []*v1.Pod
	terminating int32
	ready       int32

	uncountedSucceeded, uncountedFailed sets.Set[types.UID]
	succeeded, failed                   int32

	// Indexed Jobs: indexes already in status, and with this sync's.
	prevSucceeded, succeededIx intervals
	failedIx                   *intervals
	// delayed holds, per index, the failed pod whose finalizer stays until
	// its replacement (which inherits its failure count) exists.
	delayed map[int]*v1.Pod

	finished *batchv1.JobCondition
	backoff  backoffRecord
}

func (s *state) indexed() bool {
	return s.job.Spec.CompletionMode != nil && *s.job.Spec.CompletionMode == batchv1.IndexedCompletion
}

func (s *state) perIndex() bool { return s.indexed() && s.job.Spec.BackoffLimitPerIndex != nil }

func (s *state) completions() int {
	if s.job.Spec.Completions == nil {
		return 0
	}
	return int(*s.job.Spec.Completions)
}

func suspended(job *batchv1.Job) bool { return job.Spec.Suspend != nil && *job.Spec.Suspend }

// sync reconciles the Job key: count its finished pods, decide whether it
// has failed or succeeded, create or delete pods, and write its status.
func (c *Controller) sync(ctx context.Context, key string) (sdk.Result, error) {
	// The caches must have seen this controller's own writes for the Job
	// first. The pod and Job caches come from separate watches: a counted
	// pod's finalizer removal may arrive before the status write that
	// counted it, and its index would look pending, run a second time.
	if err := c.fresh.Ready(key); err != nil {
		return sdk.Result{}, err
	}
	obj, exists, err := c.jobs.GetIndexer().GetByKey(key)
	if err != nil {
		return sdk.Result{}, err
	}
	if !exists {
		c.exp.Delete(key)
		c.backoff.forget(key)
		c.fresh.Forget(key)
		return sdk.Result{}, nil
	}
	job := obj.(*batchv1.Job).DeepCopy()
	if job.Spec.ManagedBy != nil && *job.Spec.ManagedBy != jobControllerName {
		return sdk.Result{}, nil
	}
	if isFinished(job) {
		c.backoff.forget(key)
		c.releaseLeftovers(job)
		return sdk.Result{}, nil
	}
	if m := job.Spec.CompletionMode; m != nil && *m != batchv1.NonIndexedCompletion && *m != batchv1.IndexedCompletion {
		c.events.Event(job, v1.EventTypeWarning, "UnknownCompletionMode", "Skipped Job sync because completion mode is unknown")
		return sdk.Result{}, nil
	}
	if job.Status.UncountedTerminatedPods == nil {
		job.Status.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	// Read the expectations before the pods: a pod that arrives in between
	// defers the sync instead of being missed.
	satisfied := c.exp.Satisfied(key)
	claimed, err := c.podsFor(ctx, job)
	if err != nil {
		return sdk.Result{}, err
	}
	st := c.newState(key, job, claimed)
	requeue := c.evaluateFailure(st)
	if st.indexed() {
		c.evaluateIndexes(st)
	}
	active := int32(len(st.active))
	suspendChanged := false
	var manageErr error
	if st.finished != nil {
		deletedReady, deleted, err := c.deleteActive(ctx, st)
		if deleted != active || !satisfied {
			st.finished = nil // pods still to terminate or to be seen
		}
		active -= deleted
		st.terminating += deleted
		st.ready -= deletedReady
		manageErr = err
	} else {
		managed := false
		if satisfied && job.DeletionTimestamp == nil {
			var wait time.Duration
			active, wait, manageErr = c.manage(ctx, st)
			requeue = soonest(requeue, wait)
			managed = true
		}
		if complete(st, active) {
			st.finished = c.condition(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods")
		} else if managed {
			suspendChanged = c.updateSuspended(st)
		}
	}
	needsFlush := suspendChanged || active != job.Status.Active || job.Status.Ready == nil || *job.Status.Ready != st.ready ||
		job.Status.Terminating == nil || *job.Status.Terminating != st.terminating
	job.Status.Active = active
	job.Status.Ready = &st.ready
	job.Status.Terminating = &st.terminating
	if err := c.track(ctx, st, needsFlush); err != nil {
		return sdk.Result{}, errors.Join(fmt.Errorf("tracking the status of job %s: %w", key, err), manageErr)
	}
	return sdk.Result{RequeueAfter: requeue}, manageErr
}

func complete(st *state, active int32) bool {
	if st.job.Spec.Completions == nil {
		// Any success ends such a Job once the rest of its pods are done.
		return st.succeeded > 0 && active == 0
	}
	return st.succeeded >= *st.job.Spec.Completions && active == 0
}

func soonest(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	if b <= 0 {
		return a
	}
	return min(a, b)
}

func (c *Controller) newState(key string, job *batchv1.Job, claimed []*v1.Pod) *state {
	st := &state{
		job: job, key: key, pods: claimed,
		uncountedSucceeded: sets.New(job.Status.UncountedTerminatedPods.Succeeded...),
		uncountedFailed:    sets.New(job.Status.UncountedTerminatedPods.Failed...),
	}
	for _, p := range claimed {
		switch {
		case pods.IsActive(p):
			st.active = append(st.active, p)
			if pods.IsReady(p) {
				st.ready++
			}
		case pods.IsTerminating(p):
			st.terminating++
		}
	}
	newSucceeded, newFailed := st.newFinished()
	st.succeeded = job.Status.Succeeded + int32(len(newSucceeded)+st.uncountedSucceeded.Len())
	counted := 0
	for _, p := range newFailed {
		if matchPolicy(job, p).count {
			counted++
		}
	}
	st.failed = job.Status.Failed + int32(counted+st.uncountedFailed.Len())
	if job.Status.StartTime == nil && !suspended(job) {
		now := metav1.NewTime(c.clock.Now())
		job.Status.StartTime = &now
	}
	st.backoff = c.backoff.next(key, newSucceeded, newFailed)
	return st
}

// newFinished returns the finished pods not counted yet: they still hold
// the tracking finalizer and are not in uncountedTerminatedPods.
func (st *state) newFinished() (succeeded, failed []*v1.Pod) {
	for _, p := range st.pods {
		if !hasFinalizer(p) {
			continue
		}
		if st.indexed() {
			if _, ok := validIndex(st.job, p); !ok {
				continue
			}
		}
		if p.Status.Phase == v1.PodSucceeded && !st.uncountedSucceeded.Has(p.UID) {
			succeeded = append(succeeded, p)
		} else if isPodFailed(p, st.job) && !st.uncountedFailed.Has(p.UID) {
			failed = append(failed, p)
		}
	}
	return succeeded, failed
}

// evaluateFailure sets st.finished from an earlier FailureTarget or
// SuccessCriteriaMet, a FailJob rule, the backoff limit or the active
// deadline, and returns when the deadline will pass otherwise.
func (c *Controller) evaluateFailure(st *state) time.Duration {
	job := st.job
	if cond := findCondition(job, batchv1.JobSuccessCriteriaMet); cond != nil {
		st.finished = cond
		return 0
	}
	if cond := findCondition(job, batchv1.JobFailureTarget); cond != nil {
		st.finished = c.condition(batchv1.JobFailed, cond.Reason, cond.Message)
		return 0
	}
	if job.Spec.PodFailurePolicy != nil {
		for _, p := range st.pods {
			if isPodFailed(p, job) {
				if v := matchPolicy(job, p); v.failJob != "" {
					st.finished = c.condition(batchv1.JobFailureTarget, batchv1.JobReasonPodFailurePolicy, v.failJob)
					return 0
				}
			}
		}
	}
	limit := int32(6)
	if job.Spec.BackoffLimit != nil {
		limit = *job.Spec.BackoffLimit
	}
	switch {
	case st.failed > limit || pastBackoffLimitOnFailure(job, st.pods, limit):
		st.finished = c.condition(batchv1.JobFailureTarget, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
	case job.Spec.ActiveDeadlineSeconds != nil && job.Status.StartTime != nil && !suspended(job):
		left := time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second - c.clock.Since(job.Status.StartTime.Time)
		if left <= 0 {
			st.finished = c.condition(batchv1.JobFailureTarget, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline")
			return 0
		}
		return left
	}
	return 0
}

// pastBackoffLimitOnFailure: with restartPolicy OnFailure failures are
// container restarts, and their sum in running pods is held to the limit.
func pastBackoffLimitOnFailure(job *batchv1.Job, ps []*v1.Pod, limit int32) bool {
	if job.Spec.Template.Spec.RestartPolicy != v1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, p := range ps {
		if p.Status.Phase != v1.PodRunning && p.Status.Phase != v1.PodPending {
			continue
		}
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			restarts += s.RestartCount
		}
	}
	if limit == 0 {
		return restarts > 0
	}
	return restarts >= limit
}

// evaluateIndexes computes an Indexed Job's succeeded and failed indexes,
// and the failures of backoffLimitPerIndex and the successPolicy.
func (c *Controller) evaluateIndexes(st *state) {
	job, n := st.job, st.completions()
	st.prevSucceeded = parseIntervals(job.Status.CompletedIndexes, n)
	var newIx []int
	for _, p := range st.pods {
		if ix, ok := validIndex(job, p); ok && p.Status.Phase == v1.PodSucceeded && hasFinalizer(p) {
			newIx = append(newIx, ix)
		}
	}
	st.succeededIx = st.prevSucceeded.with(newIx)
	st.succeeded = int32(st.succeededIx.total())
	if st.perIndex() {
		var prev intervals
		if job.Status.FailedIndexes != nil {
			prev = parseIntervals(*job.Status.FailedIndexes, n)
		}
		var failedNow []int
		for _, p := range st.pods {
			if ix, ok := validIndex(job, p); ok && hasFinalizer(p) && indexFailed(job, p) {
				failedNow = append(failedNow, ix)
			}
		}
		f := prev.with(failedNow)
		st.failedIx = &f
		if st.finished == nil {
			switch {
			case job.Spec.MaxFailedIndexes != nil && f.total() > int(*job.Spec.MaxFailedIndexes):
				st.finished = c.condition(batchv1.JobFailureTarget, batchv1.JobReasonMaxFailedIndexesExceeded, "Job has exceeded the specified maximal number of failed indexes")
			case f.total() > 0 && f.total()+st.succeededIx.total() >= n:
				st.finished = c.condition(batchv1.JobFailureTarget, batchv1.JobReasonFailedIndexes, "Job has failed indexes")
			}
		}
		st.delayed = delayedPerIndex(st)
	}
	if st.finished == nil {
		if msg, ok := successMet(job, st.succeededIx); ok {
			st.finished = c.condition(batchv1.JobSuccessCriteriaMet, batchv1.JobReasonSuccessPolicy, msg)
		}
	}
}

// indexFailed reports whether the failed pod p exhausts its index: a
// FailIndex rule matched, or its counted failure reaches
// backoffLimitPerIndex.
func indexFailed(job *batchv1.Job, p *v1.Pod) bool {
	if !isPodFailed(p, job) {
		return false
	}
	v := matchPolicy(job, p)
	if v.action == batchv1.PodFailurePolicyActionFailIndex {
		return true
	}
	return v.count && annotationInt(p, batchv1.JobIndexFailureCountAnnotation) >= *job.Spec.BackoffLimitPerIndex
}

func delayedPerIndex(st *state) map[int]*v1.Pod {
	busy := sets.New[int]()
	for _, p := range st.active {
		busy.Insert(completionIndex(p))
	}
	out := map[int]*v1.Pod{}
	for _, p := range st.pods {
		ix, ok := validIndex(st.job, p)
		if !ok || !hasFinalizer(p) || !isPodFailed(p, st.job) || busy.Has(ix) || st.succeededIx.has(ix) || st.failedIx.has(ix) {
			continue
		}
		prev, seen := out[ix]
		if !seen || (absFailures(prev) <= absFailures(p) && !finishedAt(p).Before(finishedAt(prev))) {
			out[ix] = p
		}
	}
	return out
}

func absFailures(p *v1.Pod) int32 {
	return annotationInt(p, batchv1.JobIndexFailureCountAnnotation) + annotationInt(p, batchv1.JobIndexIgnoredFailureCountAnnotation)
}

func (c *Controller) condition(t batchv1.JobConditionType, reason, message string) *batchv1.JobCondition {
	now := metav1.NewTime(c.clock.Now())
	return &batchv1.JobCondition{Type: t, Status: v1.ConditionTrue, Reason: reason, Message: message, LastProbeTime: now, LastTransitionTime: now}
}

func findCondition(job *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range job.Status.Conditions {
		if c := &job.Status.Conditions[i]; c.Type == t && c.Status == v1.ConditionTrue {
			return c
		}
	}
	return nil
}

// ensureCondition sets condition t to status (adding it unless status is
// False and it is absent) and reports whether anything changed.
func ensureCondition(job *batchv1.Job, t batchv1.JobConditionType, status v1.ConditionStatus, reason, msg string, now time.Time) bool {
	for i := range job.Status.Conditions {
		c := &job.Status.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status == status {
			return false
		}
		*c = batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
			LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)}
		return true
	}
	if status == v1.ConditionFalse {
		return false
	}
	job.Status.Conditions = append(job.Status.Conditions, batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: metav1.NewTime(now), LastTransitionTime: metav1.NewTime(now)})
	return true
}

// updateSuspended keeps the Suspended condition in step with spec.suspend;
// a resumed Job restarts its activeDeadlineSeconds clock.
func (c *Controller) updateSuspended(st *state) bool {
	job, now := st.job, c.clock.Now()
	if suspended(job) {
		if ensureCondition(job, batchv1.JobSuspended, v1.ConditionTrue, "JobSuspended", "Job suspended", now) {
			c.events.Event(job, v1.EventTypeNormal, "Suspended", "Job suspended")
			job.Status.StartTime = nil
			return true
		}
		return false
	}
	if ensureCondition(job, batchv1.JobSuspended, v1.ConditionFalse, "JobResumed", "Job resumed", now) {
		c.events.Event(job, v1.EventTypeNormal, "Resumed", "Job resumed")
		t := metav1.NewTime(now)
		job.Status.StartTime = &t
		return true
	}
	return false
}

// updateStatus writes job's status with the resourceVersion it was read
// at: a stale cache makes it fail with a conflict, never double-count.
func (c *Controller) updateStatus(ctx context.Context, job *batchv1.Job) (*batchv1.Job, error) {
	out, err := c.client.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	if err != nil {
		return job, fmt.Errorf("updating the status of job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.fresh.WroteFor(out, jobsCache, out.ResourceVersion)
	return out, nil
}

// releaseLeftovers queues the finalizer removal of a finished Job's pods
// that still hold it (the finish counted every pod already).
func (c *Controller) releaseLeftovers(job *batchv1.Job) {
	objs, _ := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, job.Namespace)
	for _, obj := range objs {
		p := obj.(*v1.Pod)
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil && ref.UID == job.UID && hasFinalizer(p) {
			c.orphans.Add(podKey(p))
		}
	}
}
