package job

import (
	"slices"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
)

// writtenStatuses remembers, per Job, the versions its status writes
// replaced, so a sync can tell that the Job cache has not caught up with
// this controller's own writes yet.
//
// A sync writes the status (an Indexed Job's completedIndexes, the
// uncounted pods) before it removes the pods' tracking finalizers, and the
// pod and Job caches are fed by separate watches. When the pods' update
// arrives first, the next sync would see a succeeded pod without its
// finalizer (so not counted again) beside a Job whose status does not yet
// count it either: its index would look pending, and a second pod would
// be created for it. While the cached Job is at a version one of our writes
// replaced, the sync waits for the Job's update instead. A cache never goes
// back, so a version not in the set is our write or later: resource
// versions are only compared for equality.
type writtenStatuses struct {
	mu   sync.Mutex
	over map[string][]string // Job key -> resourceVersions replaced by the last sync's writes
}

// wroteOver records that a status write replaced job's version.
func (w *writtenStatuses) wroteOver(key string, job *batchv1.Job) {
	if job.ResourceVersion == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.over == nil {
		w.over = map[string][]string{}
	}
	w.over[key] = append(w.over[key], job.ResourceVersion)
}

// behind reports whether the cached job is at a version a write of ours
// replaced; once it is not, the record is dropped.
func (w *writtenStatuses) behind(key string, cached *batchv1.Job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if slices.Contains(w.over[key], cached.ResourceVersion) {
		return true
	}
	delete(w.over, key)
	return false
}

func (w *writtenStatuses) forget(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.over, key)
}
