package job

import (
	"fmt"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
)

// onlyReplaceFailed reports whether a pod is replaced only once it has
// failed (not as soon as it starts terminating): podReplacementPolicy
// Failed, which a podFailurePolicy implies.
func onlyReplaceFailed(job *batchv1.Job) bool {
	if job.Spec.PodFailurePolicy != nil {
		return true
	}
	return job.Spec.PodReplacementPolicy != nil && *job.Spec.PodReplacementPolicy == batchv1.Failed
}

// isPodFailed reports whether p counts as a failed pod of job: phase
// Failed, or (unless only failed pods are replaced) being deleted before
// it succeeded, since an orphaned pod may never reach Failed.
func isPodFailed(p *v1.Pod, job *batchv1.Job) bool {
	if p.Status.Phase == v1.PodFailed {
		return true
	}
	if onlyReplaceFailed(job) {
		return false
	}
	return p.DeletionTimestamp != nil && p.Status.Phase != v1.PodSucceeded
}

// policyVerdict is what a podFailurePolicy says about one failed pod.
type policyVerdict struct {
	// failJob is the failure message when a FailJob rule matched.
	failJob string
	// count is false when an Ignore rule matched.
	count bool
	// action is the matched rule's action, or "" if none matched.
	action batchv1.PodFailurePolicyAction
}

// matchPolicy applies job's podFailurePolicy to the failed pod p: the first
// rule that matches decides; no match counts the failure.
func matchPolicy(job *batchv1.Job, p *v1.Pod) policyVerdict {
	pfp := job.Spec.PodFailurePolicy
	if pfp == nil {
		return policyVerdict{count: true}
	}
	for i, rule := range pfp.Rules {
		msg, ok := matchRule(rule, p, i)
		if !ok {
			continue
		}
		switch rule.Action {
		case batchv1.PodFailurePolicyActionIgnore:
			return policyVerdict{action: rule.Action}
		case batchv1.PodFailurePolicyActionFailJob:
			return policyVerdict{failJob: msg, count: true, action: rule.Action}
		default: // Count, FailIndex
			return policyVerdict{count: true, action: rule.Action}
		}
	}
	return policyVerdict{count: true}
}

func matchRule(rule batchv1.PodFailurePolicyRule, p *v1.Pod, i int) (string, bool) {
	if req := rule.OnExitCodes; req != nil {
		if p.Status.Phase != v1.PodFailed {
			return "", false
		}
		statuses := append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 {
				continue
			}
			if req.ContainerName != nil && *req.ContainerName != cs.Name {
				continue
			}
			in := slices.Contains(req.Values, t.ExitCode)
			if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
				return fmt.Sprintf("Container %s for pod %s/%s failed with exit code %v matching %v rule at index %d",
					cs.Name, p.Namespace, p.Name, t.ExitCode, rule.Action, i), true
			}
		}
		return "", false
	}
	for _, pat := range rule.OnPodConditions {
		want := pat.Status
		if want == "" {
			want = v1.ConditionTrue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == pat.Type && c.Status == want {
				return fmt.Sprintf("Pod %s/%s has condition %v matching %v rule at index %d",
					p.Namespace, p.Name, c.Type, rule.Action, i), true
			}
		}
	}
	return "", false
}

// successMet returns the SuccessCriteriaMet message when a successPolicy
// rule is satisfied by the succeeded indexes.
func successMet(job *batchv1.Job, succeeded intervals) (string, bool) {
	sp := job.Spec.SuccessPolicy
	if sp == nil || len(succeeded) == 0 || job.Spec.Completions == nil {
		return "", false
	}
	for i, rule := range sp.Rules {
		if rule.SucceededIndexes != nil {
			required := parseIntervals(*rule.SucceededIndexes, int(*job.Spec.Completions))
			if len(required) == 0 {
				continue
			}
			n := 0
			for _, iv := range required {
				for ix := iv.first; ix <= iv.last; ix++ {
					if succeeded.has(ix) {
						n++
					}
				}
			}
			if (rule.SucceededCount == nil && n == required.total()) || (rule.SucceededCount != nil && n >= int(*rule.SucceededCount)) {
				return fmt.Sprintf("Matched rules at index %d", i), true
			}
		} else if rule.SucceededCount != nil && succeeded.total() >= int(*rule.SucceededCount) {
			return fmt.Sprintf("Matched rules at index %d", i), true
		}
	}
	return "", false
}

// Pod failure backoff: a Job waits before replacing a failed pod, 10 s
// doubling with each failure since its last success, capped at 6 minutes
// (the delay the Job documentation states).
const (
	podFailureBackoff    = 10 * time.Second
	maxPodFailureBackoff = 6 * time.Minute
)

func backoffDelay(failures int32) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := podFailureBackoff
	for i := int32(1); i < failures && d < maxPodFailureBackoff; i++ {
		d *= 2
	}
	return min(d, maxPodFailureBackoff)
}

// finishedAt is when p finished: its latest container termination, else
// its Ready condition's last change, else its deletion or creation time.
func finishedAt(p *v1.Pod) time.Time {
	var t time.Time
	for _, cs := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	if !t.IsZero() {
		return t
	}
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodReady && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	if p.DeletionTimestamp != nil {
		return p.DeletionTimestamp.Time
	}
	return p.CreationTimestamp.Time
}

// backoffRecord is a Job's failures since its last success.
type backoffRecord struct {
	failures    int32
	lastFailure time.Time
}

// backoffStore keeps each Job's backoffRecord in memory; a restarted
// controller starts from the failed pods it still sees, as upstream's.
type backoffStore struct {
	mu sync.Mutex
	m  map[string]backoffRecord
}

func newBackoffStore() *backoffStore { return &backoffStore{m: map[string]backoffRecord{}} }

// next returns key's record updated with the newly counted pods.
func (s *backoffStore) next(key string, succeeded, failed []*v1.Pod) backoffRecord {
	s.mu.Lock()
	r := s.m[key]
	s.mu.Unlock()
	var lastSuccess time.Time
	for _, p := range succeeded {
		if t := finishedAt(p); t.After(lastSuccess) {
			lastSuccess = t
		}
	}
	if !lastSuccess.IsZero() && lastSuccess.After(r.lastFailure) {
		r.failures = 0
	}
	for _, p := range failed {
		t := finishedAt(p)
		if lastSuccess.IsZero() || t.After(lastSuccess) {
			r.failures++
			if t.After(r.lastFailure) {
				r.lastFailure = t
			}
		}
	}
	return r
}

func (s *backoffStore) store(key string, r backoffRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = r
}

func (s *backoffStore) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

// remaining is how long to wait at now before the next pod may start.
func (r backoffRecord) remaining(now time.Time) time.Duration {
	if r.failures == 0 {
		return 0
	}
	return max(0, backoffDelay(r.failures)-now.Sub(r.lastFailure))
}
