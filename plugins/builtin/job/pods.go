package job

import (
	"context"
	"encoding/json"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/keelson/keelson/plugins/sdk"
)

// slimPod keeps in the cache what the reconciler reads of a pod: identity,
// labels, the job annotations, owners, finalizers, deletion, phase,
// conditions (without messages) and the containers' exit codes and restart
// counts. The pod's spec, most of its size, goes.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences, Finalizers: p.Finalizers,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	for _, k := range []string{batchv1.JobCompletionIndexAnnotation, batchv1.JobIndexFailureCountAnnotation, batchv1.JobIndexIgnoredFailureCountAnnotation} {
		if v, ok := p.Annotations[k]; ok {
			if s.Annotations == nil {
				s.Annotations = map[string]string{}
			}
			s.Annotations[k] = v
		}
	}
	for _, c := range p.Status.Conditions {
		s.Status.Conditions = append(s.Status.Conditions, v1.PodCondition{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime})
	}
	s.Status.ContainerStatuses = slimStatuses(p.Status.ContainerStatuses)
	s.Status.InitContainerStatuses = slimStatuses(p.Status.InitContainerStatuses)
	return s, nil
}

func slimStatuses(in []v1.ContainerStatus) []v1.ContainerStatus {
	var out []v1.ContainerStatus
	for _, c := range in {
		s := v1.ContainerStatus{Name: c.Name, RestartCount: c.RestartCount}
		if t := c.State.Terminated; t != nil {
			s.State.Terminated = &v1.ContainerStateTerminated{ExitCode: t.ExitCode, FinishedAt: t.FinishedAt}
		}
		out = append(out, s)
	}
	return out
}

// removeFinalizerPatch is a JSON patch that removes the tracking finalizer
// from p, guarded by a test of the list it read so a concurrent change
// makes it fail instead of removing the wrong entry.
func removeFinalizerPatch(p *v1.Pod) ([]byte, bool) {
	var keep []string
	for _, f := range p.Finalizers {
		if f != batchv1.JobTrackingFinalizer {
			keep = append(keep, f)
		}
	}
	if len(keep) == len(p.Finalizers) {
		return nil, false
	}
	if keep == nil {
		keep = []string{}
	}
	ops := []map[string]any{
		{"op": "test", "path": "/metadata/uid", "value": p.UID},
		{"op": "replace", "path": "/metadata/finalizers", "value": keep},
	}
	b, _ := json.Marshal(ops)
	return b, true
}

// removeFinalizer strips the tracking finalizer from p. A pod that is gone
// or was replaced needs nothing more; a conflicting change to its
// finalizers is retried on a fresh read.
func (c *Controller) removeFinalizer(ctx context.Context, p *v1.Pod) error {
	patch, ok := removeFinalizerPatch(p)
	if !ok {
		return nil
	}
	patched, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if err == nil {
		c.wrotePod(patched)
		return nil
	}
	if apierrors.IsNotFound(err) {
		return nil
	}
	if !apierrors.IsInvalid(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("removing the tracking finalizer of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	fresh, gerr := c.client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(gerr) || (gerr == nil && fresh.UID != p.UID) {
		return nil
	}
	if gerr != nil {
		return fmt.Errorf("re-reading pod %s/%s: %w", p.Namespace, p.Name, gerr)
	}
	if patch, ok = removeFinalizerPatch(fresh); !ok {
		return nil
	}
	patched, err = c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.JSONPatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing the tracking finalizer of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	if err == nil {
		c.wrotePod(patched)
	}
	return nil
}

// syncOrphanPod removes the tracking finalizer of a pod whose Job is gone,
// replaced or finished: nobody will count it any more. The Job is read
// afresh from the API server first, since the cache may lag behind.
func (c *Controller) syncOrphanPod(ctx context.Context, key string) (sdk.Result, error) {
	obj, ok, err := c.pods.GetIndexer().GetByKey(key)
	if err != nil || !ok {
		return sdk.Result{}, err
	}
	pod := obj.(*v1.Pod)
	if !hasFinalizer(pod) {
		return sdk.Result{}, nil
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		if len(c.jobsSelecting(pod)) > 0 {
			return sdk.Result{}, nil // a Job may adopt it and count it
		}
	} else if ref.Kind == jobKind.Kind {
		j, err := c.client.BatchV1().Jobs(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return sdk.Result{}, fmt.Errorf("reading job %s/%s of pod %s: %w", pod.Namespace, ref.Name, key, err)
		case j.UID == ref.UID && !isFinished(j):
			return sdk.Result{}, nil // its Job counts it
		}
	}
	return sdk.Result{}, c.removeFinalizer(ctx, pod)
}

// podTemplate returns the pod the Job creates for index (-1 when not
// Indexed): the template with the tracking finalizer, the job-name label
// the pod cache selects on, and for Indexed Jobs the completion index
// (annotation, label, JOB_COMPLETION_INDEX, hostname <job>-<index>).
func podTemplate(job *batchv1.Job, index int, failures, ignored int32, perIndex bool) *v1.Pod {
	t := job.Spec.Template.DeepCopy()
	pod := &v1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	pod.Name, pod.Namespace, pod.ResourceVersion, pod.UID = "", job.Namespace, "", ""
	pod.GenerateName = job.Name + "-"
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if _, ok := pod.Labels[batchv1.JobNameLabel]; !ok {
		pod.Labels[batchv1.JobNameLabel] = job.Name
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if !hasFinalizer(pod) {
		pod.Finalizers = append(pod.Finalizers, batchv1.JobTrackingFinalizer)
	}
	pod.OwnerReferences = append(pod.OwnerReferences, *metav1.NewControllerRef(job, jobKind))
	if index >= 0 {
		ix := fmt.Sprint(index)
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = ix
		pod.Labels[batchv1.JobCompletionIndexAnnotation] = ix
		pod.GenerateName = generateNameWithIndex(job.Name, index)
		if pod.Spec.Hostname == "" {
			pod.Spec.Hostname = fmt.Sprintf("%s-%d", job.Name, index)
		}
		for i := range pod.Spec.InitContainers {
			addIndexEnv(&pod.Spec.InitContainers[i])
		}
		for i := range pod.Spec.Containers {
			addIndexEnv(&pod.Spec.Containers[i])
		}
		if perIndex {
			pod.Annotations[batchv1.JobIndexFailureCountAnnotation] = fmt.Sprint(failures)
			if ignored > 0 {
				pod.Annotations[batchv1.JobIndexIgnoredFailureCountAnnotation] = fmt.Sprint(ignored)
			}
		}
	}
	return pod
}

// maxGeneratedName is how long a generateName prefix may be (the API
// server appends 5 random characters to reach 63).
const maxGeneratedName = 58

func generateNameWithIndex(job string, index int) string {
	suffix := fmt.Sprintf("-%d-", index)
	prefix := job + suffix
	if len(prefix) > maxGeneratedName {
		prefix = job[:maxGeneratedName-len(suffix)] + suffix
	}
	return prefix
}

func addIndexEnv(c *v1.Container) {
	for _, e := range c.Env {
		if e.Name == "JOB_COMPLETION_INDEX" {
			return
		}
	}
	c.Env = append(c.Env, v1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &v1.EnvVarSource{
		FieldRef: &v1.ObjectFieldSelector{FieldPath: fmt.Sprintf("metadata.labels['%s']", batchv1.JobCompletionIndexAnnotation)},
	}})
}

// createPod creates pod for job and records the Event upstream writes.
func (c *Controller) createPod(ctx context.Context, job *batchv1.Job, pod *v1.Pod) error {
	created, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause) {
			c.events.Eventf(job, v1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return fmt.Errorf("creating a pod for job %s/%s: %w", job.Namespace, job.Name, err)
	}
	c.wrotePod(created)
	c.events.Eventf(job, v1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", created.Name)
	return nil
}

// deletePodOf deletes pod of job and records the Event upstream writes.
// With keepFinalizer (the Job has failed or succeeded) the pod keeps its
// tracking finalizer and is counted once it has terminated; otherwise (a
// pod too many, or a suspended Job) it is released uncounted first.
func (c *Controller) deletePodOf(ctx context.Context, job *batchv1.Job, pod *v1.Pod, keepFinalizer bool) error {
	if !keepFinalizer {
		if err := c.removeFinalizer(ctx, pod); err != nil {
			return err
		}
	}
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	if err != nil && !apierrors.IsNotFound(err) {
		c.events.Eventf(job, v1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		return fmt.Errorf("deleting pod %s/%s of job %s: %w", pod.Namespace, pod.Name, job.Name, err)
	}
	if err == nil {
		c.events.Eventf(job, v1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
	}
	return nil
}

func podKey(p *v1.Pod) string { return cache.MetaObjectToName(p).String() }

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = slimPod
