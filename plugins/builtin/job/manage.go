package job

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/builtin/internal/ownership"
	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// maxPerSync caps the pods one sync creates or deletes, as upstream.
const maxPerSync = 500

// podsFor returns the pods job controls after adopting the matching
// orphans (with the tracking finalizer, so they are counted) and releasing
// the controlled pods whose labels no longer match.
func (c *Controller) podsFor(ctx context.Context, job *batchv1.Job) ([]*v1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("job %s/%s has an invalid selector: %w", job.Namespace, job.Name, err)
	}
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, job.Namespace)
	if err != nil {
		return nil, err
	}
	all := make([]*v1.Pod, 0, len(objs))
	for _, o := range objs {
		all = append(all, o.(*v1.Pod))
	}
	recheck := ownership.Recheck(job.UID, func(ctx context.Context) (metav1.Object, error) {
		return c.client.BatchV1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
	})
	if isFinished(job) {
		recheck = func(context.Context) error { return fmt.Errorf("job %s/%s has finished", job.Namespace, job.Name) }
	}
	claimer := ownership.NewClaimer(job, jobKind, recheck, c.patchPodForClaim)
	return ownership.Claim(ctx, claimer, all, func(p *v1.Pod) bool { return sel.Matches(labels.Set(p.Labels)) })
}

// patchPodForClaim applies an adoption or release patch; an adoption also
// adds the tracking finalizer (finalizers merge as a set).
func (c *Controller) patchPodForClaim(ctx context.Context, namespace, name string, patch []byte) error {
	var m map[string]map[string]any
	if err := json.Unmarshal(patch, &m); err == nil {
		if refs, ok := m["metadata"]["ownerReferences"].([]any); ok && len(refs) == 1 {
			if ref, ok := refs[0].(map[string]any); ok && ref["controller"] == true {
				m["metadata"]["finalizers"] = []string{batchv1.JobTrackingFinalizer}
				patch, _ = json.Marshal(m)
			}
		}
	}
	patched, err := c.client.CoreV1().Pods(namespace).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err == nil {
		c.wrotePod(patched)
	}
	return err
}

// deleteActive deletes a decided Job's active pods, keeping their
// finalizers so they are counted once terminated.
func (c *Controller) deleteActive(ctx context.Context, st *state) (ready, deleted int32, err error) {
	return c.deleteAll(ctx, st.job, st.active, true)
}

func (c *Controller) deleteAll(ctx context.Context, job *batchv1.Job, ps []*v1.Pod, keepFinalizer bool) (ready, deleted int32, err error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 16)
	key := cache.MetaObjectToName(job).String()
	for _, p := range ps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.deletePodOf(ctx, job, p, keepFinalizer); err != nil {
				c.exp.DeletionObserved(key, podKey(p))
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			atomic.AddInt32(&deleted, 1)
			if pods.IsReady(p) {
				atomic.AddInt32(&ready, 1)
			}
		})
	}
	wg.Wait()
	return ready, deleted, errors.Join(errs...)
}

// manage creates or deletes pods towards the wanted number of active ones
// and returns the active count after it, and how long a failure backoff
// holds creations back.
func (c *Controller) manage(ctx context.Context, st *state) (int32, time.Duration, error) {
	job := st.job
	active := int32(len(st.active))
	if suspended(job) {
		ready, deleted, err := c.deleteSome(ctx, st, st.active)
		st.terminating += deleted
		st.ready -= ready
		return active - deleted, 0, err
	}
	want := wantActive(st, active)
	if rm := removalCandidates(st, int(max(active-want, 0))); len(rm) > 0 {
		if len(rm) > maxPerSync {
			rm = rm[:maxPerSync]
		}
		// Deletions first; creations, if any are also due, wait for the next sync.
		ready, deleted, err := c.deleteSome(ctx, st, rm)
		st.terminating += deleted
		st.ready -= ready
		return active - deleted, 0, err
	}
	var terminating int32
	if onlyReplaceFailed(job) {
		terminating = st.terminating
	}
	diff := min(want-terminating-active, maxPerSync)
	if diff <= 0 {
		return active, 0, nil
	}
	if !st.perIndex() {
		if wait := st.backoff.remaining(c.clock.Now()); wait > 0 {
			return active, wait, nil
		}
	}
	templates, wait := c.newPods(st, int(diff))
	if len(templates) == 0 {
		return active, wait, nil
	}
	created, err := c.createSlowStart(ctx, st, templates)
	return active + created, wait, err
}

func (c *Controller) deleteSome(ctx context.Context, st *state, ps []*v1.Pod) (int32, int32, error) {
	keys := make([]string, len(ps))
	for i, p := range ps {
		keys[i] = podKey(p)
	}
	c.exp.ExpectDeletions(st.key, keys)
	return c.deleteAll(ctx, st.job, ps, false)
}

func wantActive(st *state, active int32) int32 {
	parallelism := int32(1)
	if st.job.Spec.Parallelism != nil {
		parallelism = *st.job.Spec.Parallelism
	}
	if st.job.Spec.Completions == nil {
		if st.succeeded > 0 {
			return active // leave what runs running
		}
		return parallelism
	}
	return max(0, min(*st.job.Spec.Completions-st.succeeded, parallelism))
}

// removalCandidates returns at least n active pods to delete: for Indexed
// Jobs first those with no valid index, an index already succeeded, or a
// duplicate index; then the least advanced (not ready, newest).
func removalCandidates(st *state, n int) []*v1.Pod {
	var rm, left []*v1.Pod
	if st.indexed() {
		seen := map[int]bool{}
		sorted := append([]*v1.Pod(nil), st.active...)
		sort.SliceStable(sorted, func(i, j int) bool { return moreAdvanced(sorted[i], sorted[j]) })
		for _, p := range sorted {
			ix, ok := validIndex(st.job, p)
			if !ok || seen[ix] || st.succeededIx.has(ix) {
				rm = append(rm, p)
				continue
			}
			seen[ix] = true
			left = append(left, p)
		}
	} else {
		left = append(left, st.active...)
	}
	if len(rm) < n {
		sort.SliceStable(left, func(i, j int) bool { return moreAdvanced(left[j], left[i]) })
		rm = append(rm, left[:min(n-len(rm), len(left))]...)
	}
	return rm
}

// moreAdvanced orders pods as worth keeping: ready before not, running
// before pending, older before newer.
func moreAdvanced(a, b *v1.Pod) bool {
	if ra, rb := pods.IsReady(a), pods.IsReady(b); ra != rb {
		return ra
	}
	if ra, rb := a.Status.Phase == v1.PodRunning, b.Status.Phase == v1.PodRunning; ra != rb {
		return ra
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

// newPods returns up to n pods to create; for Indexed Jobs the lowest
// pending indexes (whose per-index backoff has passed, and how long until
// the next one's does).
func (c *Controller) newPods(st *state, n int) ([]*v1.Pod, time.Duration) {
	job := st.job
	if !st.indexed() {
		out := make([]*v1.Pod, n)
		for i := range out {
			out[i] = podTemplate(job, -1, 0, 0, false)
		}
		return out, 0
	}
	var busy []int
	for _, p := range st.active {
		busy = append(busy, completionIndex(p))
	}
	if onlyReplaceFailed(job) {
		for _, p := range st.pods {
			if pods.IsTerminating(p) {
				busy = append(busy, completionIndex(p))
			}
		}
	}
	done := st.succeededIx
	if st.failedIx != nil {
		done = done.with(expand(*st.failedIx))
	}
	var out []*v1.Pod
	var wait time.Duration
	for _, ix := range firstPending(n, st.completions(), done, busy) {
		var failures, ignored int32
		if prev, ok := st.delayed[ix]; ok {
			failures = annotationInt(prev, batchv1.JobIndexFailureCountAnnotation)
			ignored = annotationInt(prev, batchv1.JobIndexIgnoredFailureCountAnnotation)
			if matchPolicy(job, prev).count {
				failures++
			} else {
				ignored++
			}
			if left := backoffDelay(failures) - c.clock.Since(finishedAt(prev)); left > 0 {
				wait = soonest(wait, left)
				continue
			}
		}
		out = append(out, podTemplate(job, ix, failures, ignored, st.perIndex()))
	}
	return out, wait
}

func expand(oi intervals) []int {
	var out []int
	for _, iv := range oi {
		for i := iv.first; i <= iv.last; i++ {
			out = append(out, i)
		}
	}
	return out
}

// createSlowStart creates ps in batches of 1, 2, 4, ... and stops at the
// first batch with an error, so a Job that cannot create pods (quota, a bad
// template) makes one failing request per sync rather than hundreds.
func (c *Controller) createSlowStart(ctx context.Context, st *state, ps []*v1.Pod) (int32, error) {
	c.exp.ExpectCreations(st.key, len(ps))
	var created int32
	for batch := 1; len(ps) > 0; batch *= 2 {
		cur := ps[:min(batch, len(ps))]
		ps = ps[len(cur):]
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for _, p := range cur {
			wg.Go(func() {
				if err := c.createPod(ctx, st.job, p); err != nil {
					c.exp.CreationObserved(st.key)
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				atomic.AddInt32(&created, 1)
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			for range ps {
				c.exp.CreationObserved(st.key) // never attempted
			}
			return created, errors.Join(errs...)
		}
	}
	return created, nil
}
