package job

import (
	"context"
	"errors"
	"sort"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// maxUncounted caps the UIDs one sync adds to uncountedTerminatedPods, as
// upstream: the status stays small and a big Job cannot starve others.
const maxUncounted = 500

// track counts finished pods exactly once, in three steps that survive a
// crash between any two: (1) write their UIDs (or, for succeeded Indexed
// pods, their indexes) into the status; (2) remove their tracking
// finalizers; (3) move the UIDs whose pods no longer hold the finalizer
// into the succeeded/failed counters. A pod without the finalizer is never
// looked at again, and a UID is counted only while it is in the status the
// write is conditioned on (resourceVersion), so a stale cache fails the
// write instead of counting twice. Once nothing is uncounted and no pod is
// terminating, a decided Job gets its Complete or Failed condition.
func (c *Controller) track(ctx context.Context, st *state, needsFlush bool) error {
	job := st.job
	if st.indexed() {
		sort.SliceStable(st.pods, func(i, j int) bool { return completionIndex(st.pods[i]) < completionIndex(st.pods[j]) })
	}
	withFinalizer := sets.New[types.UID]()
	for _, p := range st.pods {
		if hasFinalizer(p) {
			withFinalizer.Insert(p.UID)
		}
	}
	if countUncounted(&job.Status, withFinalizer) {
		needsFlush = true
	}
	toRelease, added, full := st.collectFinished()
	needsFlush = needsFlush || added
	if st.indexed() {
		s := st.succeededIx.String()
		if s != job.Status.CompletedIndexes {
			needsFlush = true
		}
		job.Status.CompletedIndexes = s
		job.Status.Succeeded = int32(st.succeededIx.total())
		var failed *string
		if st.failedIx != nil {
			f := st.failedIx.String()
			failed = &f
		}
		if (failed == nil) != (job.Status.FailedIndexes == nil) || (failed != nil && *failed != *job.Status.FailedIndexes) {
			job.Status.FailedIndexes = failed
			needsFlush = true
		}
	}
	if st.finished != nil && st.finished.Type == batchv1.JobFailureTarget {
		job.Status.Conditions = append(job.Status.Conditions, *st.finished)
		needsFlush = true
		st.finished = c.condition(batchv1.JobFailed, st.finished.Reason, st.finished.Message)
	}
	if st.finished != nil && st.finished.Type == batchv1.JobSuccessCriteriaMet {
		if findCondition(job, batchv1.JobSuccessCriteriaMet) == nil {
			job.Status.Conditions = append(job.Status.Conditions, *st.finished)
			needsFlush = true
		}
		st.finished = c.condition(batchv1.JobComplete, st.finished.Reason, st.finished.Message)
	}
	var err error
	if needsFlush {
		if job, err = c.updateStatus(ctx, job); err != nil {
			return err
		}
		st.job = job
		c.backoff.store(st.key, st.backoff)
		needsFlush = false
	}
	released, rmErr := c.releaseAll(ctx, toRelease)
	for _, uid := range released {
		withFinalizer.Delete(uid)
	}
	if countUncounted(&job.Status, withFinalizer) {
		needsFlush = true
	}
	done := !full && rmErr == nil && c.enactFinished(st)
	if done {
		needsFlush = true
	}
	if needsFlush {
		if job, err = c.updateStatus(ctx, job); err != nil {
			return errors.Join(err, rmErr)
		}
		if done {
			c.recordFinished(job, st.finished)
		}
	}
	return rmErr
}

// collectFinished adds the newly finished pods to the status (uncounted
// UIDs, succeeded indexes) and returns the pods whose finalizer may go,
// whether the status changed, and whether the per-sync cap was reached.
func (st *state) collectFinished() (release []*v1.Pod, added, full bool) {
	job := st.job
	uncounted := job.Status.UncountedTerminatedPods
	var newIx []int
	failing := st.finished != nil && st.finished.Type != batchv1.JobSuccessCriteriaMet
	for _, p := range st.pods {
		if !hasFinalizer(p) {
			continue
		}
		failed := isPodFailed(p, job)
		if !st.canRelease(p, failed) {
			continue
		}
		release = append(release, p)
		ix, validIx := validIndex(job, p)
		switch {
		case p.Status.Phase == v1.PodSucceeded && !st.uncountedFailed.Has(p.UID):
			if st.indexed() {
				if validIx && !st.prevSucceeded.has(ix) {
					newIx = append(newIx, ix)
					added = true
				}
			} else if !st.uncountedSucceeded.Has(p.UID) {
				uncounted.Succeeded = append(uncounted.Succeeded, p.UID)
				added = true
			}
		case failed || failing:
			// Once the Job has failed, every pod not finished counts as failed.
			if !st.uncountedFailed.Has(p.UID) && (!st.indexed() || validIx) && matchPolicy(job, p).count {
				uncounted.Failed = append(uncounted.Failed, p.UID)
				added = true
			}
		}
		if len(newIx)+len(uncounted.Succeeded)+len(uncounted.Failed) >= maxUncounted {
			full = true
			break
		}
	}
	if st.indexed() {
		st.succeededIx = st.succeededIx.with(newIx)
	}
	return release, added, full
}

// canRelease reports whether p's finalizer may go now: the Job is being
// deleted or is decided, p succeeded, or p failed and (with
// backoffLimitPerIndex) is not the pod its index's replacement inherits
// its failure count from.
func (st *state) canRelease(p *v1.Pod, failed bool) bool {
	if st.job.DeletionTimestamp != nil || st.finished != nil || p.Status.Phase == v1.PodSucceeded {
		return true
	}
	if !failed {
		return false
	}
	if st.perIndex() {
		if d, ok := st.delayed[completionIndex(p)]; ok && d.UID == p.UID {
			return false
		}
	}
	return true
}

// countUncounted moves the uncounted UIDs whose pods no longer hold the
// finalizer into the counters, and reports whether anything moved.
func countUncounted(status *batchv1.JobStatus, withFinalizer sets.Set[types.UID]) bool {
	u := status.UncountedTerminatedPods
	keepS, keepF := keep(u.Succeeded, withFinalizer), keep(u.Failed, withFinalizer)
	moved := len(keepS) != len(u.Succeeded) || len(keepF) != len(u.Failed)
	status.Succeeded += int32(len(u.Succeeded) - len(keepS))
	status.Failed += int32(len(u.Failed) - len(keepF))
	u.Succeeded, u.Failed = keepS, keepF
	return moved
}

func keep(uids []types.UID, in sets.Set[types.UID]) []types.UID {
	var out []types.UID
	for _, u := range uids {
		if in.Has(u) {
			out = append(out, u)
		}
	}
	return out
}

// releaseAll removes the tracking finalizer from ps, a few at a time, and
// returns the UIDs it removed it from.
func (c *Controller) releaseAll(ctx context.Context, ps []*v1.Pod) ([]types.UID, error) {
	var mu sync.Mutex
	var done []types.UID
	var errs []error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, p := range ps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := c.removeFinalizer(ctx, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			done = append(done, p.UID)
		})
	}
	wg.Wait()
	return done, errors.Join(errs...)
}

// enactFinished adds the decided condition once every pod is counted and
// none is still terminating.
func (c *Controller) enactFinished(st *state) bool {
	job := st.job
	if st.finished == nil {
		return false
	}
	if u := job.Status.UncountedTerminatedPods; len(u.Succeeded)+len(u.Failed) > 0 || st.terminating > 0 {
		return false
	}
	f := st.finished
	ensureCondition(job, f.Type, f.Status, f.Reason, f.Message, c.clock.Now())
	if f.Type == batchv1.JobComplete {
		t := f.LastTransitionTime
		job.Status.CompletionTime = &t
	}
	return true
}

func (c *Controller) recordFinished(job *batchv1.Job, f *batchv1.JobCondition) {
	if f.Type == batchv1.JobComplete {
		if job.Spec.Completions != nil && job.Status.Succeeded > *job.Spec.Completions {
			c.events.Event(job, v1.EventTypeWarning, "TooManySucceededPods", "Too many succeeded pods running after completion count reached")
		}
		c.events.Event(job, v1.EventTypeNormal, "Completed", "Job completed")
		return
	}
	c.events.Event(job, v1.EventTypeWarning, f.Reason, f.Message)
}
