package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/daemonset"
	"github.com/keelson/keelson/plugins/builtin/deployment"
	"github.com/keelson/keelson/plugins/builtin/job"
	"github.com/keelson/keelson/plugins/builtin/replicaset"
)

// A workload is one benchmark: the controllers it needs, and its phases,
// each timed from the start of the phase that begins it.
type workload interface {
	name() string
	describe(size int) string
	// plugins are keelson's plugins for it; kcmControllers upstream's.
	plugins() []string
	kcmControllers() string
	// completes says whether the bench plays the kubelet by completing
	// pods (Jobs) rather than making them ready.
	completes() bool
	// probe creates an object the controllers act on at once, and
	// returns when they have.
	probe(ctx context.Context, client kubernetes.Interface) (acted func() bool, err error)
	// setup creates what must exist before the clock starts (nodes).
	setup(ctx context.Context, client kubernetes.Interface, size int) error
	// run runs the phases, recording each.
	run(ctx context.Context, b *bench) error
}

// bench is what a workload's phases work with.
type bench struct {
	client  kubernetes.Interface
	factory informers.SharedInformerFactory
	size    int
	timeout time.Duration
	phases  []Phase
	// firstReplicaSet names the Deployment's first ReplicaSet: the same
	// name under both controllers shows the same template hash.
	firstReplicaSet string
}

// Phase is one timed step of a workload.
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration_ns"`
}

// phase times cond from start and records it as name.
func (b *bench) phase(ctx context.Context, name string, start time.Time, cond func() bool) error {
	d, err := until(ctx, b.timeout, start, cond)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	b.phases = append(b.phases, Phase{Name: name, Duration: d})
	return nil
}

func workloadByName(name string) (workload, error) {
	for _, w := range []workload{deploymentWorkload{}, jobWorkload{}, daemonSetWorkload{}} {
		if w.name() == name {
			return w, nil
		}
	}
	return nil, fmt.Errorf("-workload %q: want deployment, job or daemonset", name)
}

// deploymentWorkload: a Deployment of size replicas created, then rolled
// to a new image.
type deploymentWorkload struct{}

func (deploymentWorkload) name() string { return "deployment" }
func (deploymentWorkload) describe(size int) string {
	return fmt.Sprintf("Deployment of %d replicas, rolling update to a new image", size)
}
func (deploymentWorkload) plugins() []string      { return []string{replicaset.Name, deployment.Name} }
func (deploymentWorkload) kcmControllers() string { return "replicaset,deployment" }
func (deploymentWorkload) completes() bool        { return false }
func (deploymentWorkload) setup(context.Context, kubernetes.Interface, int) error {
	return nil
}

// probe is a Deployment of no replicas, which gets a ReplicaSet.
func (deploymentWorkload) probe(ctx context.Context, client kubernetes.Interface) (func() bool, error) {
	probe := benchDeployment(0)
	probe.Name = "probe"
	probe.Spec.Selector.MatchLabels["app"] = "probe"
	probe.Spec.Template.Labels["app"] = "probe"
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() bool {
		list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=probe"})
		return err == nil && len(list.Items) == 1 && list.Items[0].Status.ObservedGeneration >= 1
	}, nil
}

func (deploymentWorkload) run(ctx context.Context, b *bench) error {
	pods, deps := b.factory.Core().V1().Pods().Informer(), b.factory.Apps().V1().Deployments().Informer()
	if err := b.sync(ctx, pods, deps); err != nil {
		return err
	}
	start := time.Now()
	if _, err := b.client.AppsV1().Deployments(ns).Create(ctx, benchDeployment(b.size), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the deployment: %w", err)
	}
	if err := b.phase(ctx, "all pods created", start, func() bool { return livePods(pods) >= b.size }); err != nil {
		return err
	}
	if err := b.phase(ctx, "deployment available", start, func() bool { return rolledOut(deps, b.size, 1) }); err != nil {
		return err
	}
	first, err := firstReplicaSet(ctx, b.client)
	if err != nil {
		return err
	}
	b.firstReplicaSet = first
	start = time.Now()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.invalid/app:2"}]}}}}`)
	updated, err := b.client.AppsV1().Deployments(ns).Patch(ctx, "bench", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("updating the image: %w", err)
	}
	return b.phase(ctx, "rolling update complete", start, func() bool { return rolledOut(deps, b.size, updated.Generation) })
}

// sync starts the bench's informers and waits for them.
func (b *bench) sync(ctx context.Context, infs ...cache.SharedIndexInformer) error {
	b.factory.Start(ctx.Done())
	for _, inf := range infs {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return fmt.Errorf("bench caches did not sync")
		}
	}
	return nil
}

// jobParallelism is how many of the Indexed Job's pods run at once.
const jobParallelism = 100

// jobWorkload: an Indexed Job of size completions, jobParallelism at a
// time, its pods completed by the bench as soon as they appear.
type jobWorkload struct{}

func (jobWorkload) name() string { return "job" }
func (jobWorkload) describe(size int) string {
	return fmt.Sprintf("Indexed Job of %d completions, parallelism %d, pods completed as they appear", size, jobParallelism)
}
func (jobWorkload) plugins() []string      { return []string{job.Name} }
func (jobWorkload) kcmControllers() string { return "job" }
func (jobWorkload) completes() bool        { return true }
func (jobWorkload) setup(context.Context, kubernetes.Interface, int) error {
	return nil
}

// probe is a suspended Job, which gets its Suspended condition.
func (jobWorkload) probe(ctx context.Context, client kubernetes.Interface) (func() bool, error) {
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		Spec: batchv1.JobSpec{Suspend: ptr.To(true), Template: v1.PodTemplateSpec{Spec: v1.PodSpec{
			RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "work", Image: "registry.invalid/work:1"}}}}},
	}
	if _, err := client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() bool {
		got, err := client.BatchV1().Jobs(ns).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range got.Status.Conditions {
			if c.Type == batchv1.JobSuspended && c.Status == v1.ConditionTrue {
				return true
			}
		}
		return false
	}, nil
}

func (jobWorkload) run(ctx context.Context, b *bench) error {
	jobs := b.factory.Batch().V1().Jobs().Informer()
	if err := b.sync(ctx, jobs); err != nil {
		return err
	}
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: batchv1.JobSpec{
			Completions: ptr.To(int32(b.size)), Parallelism: ptr.To[int32](jobParallelism),
			CompletionMode: ptr.To(batchv1.IndexedCompletion),
			Template: v1.PodTemplateSpec{Spec: v1.PodSpec{RestartPolicy: v1.RestartPolicyNever,
				Containers: []v1.Container{{Name: "work", Image: "registry.invalid/work:1"}}}},
		},
	}
	start := time.Now()
	if _, err := b.client.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the job: %w", err)
	}
	return b.phase(ctx, "job complete", start, func() bool {
		obj, ok, _ := jobs.GetStore().GetByKey(ns + "/bench")
		if !ok {
			return false
		}
		for _, c := range obj.(*batchv1.Job).Status.Conditions {
			if c.Type == batchv1.JobComplete && c.Status == v1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// daemonSetWorkload: a DaemonSet over size API-created nodes, then rolled
// to a new image 10% of the nodes at a time.
type daemonSetWorkload struct{}

func (daemonSetWorkload) name() string { return "daemonset" }
func (daemonSetWorkload) describe(size int) string {
	return fmt.Sprintf("DaemonSet on %d API-created nodes, rolling update (maxUnavailable 10%%) to a new image", size)
}
func (daemonSetWorkload) plugins() []string      { return []string{daemonset.Name} }
func (daemonSetWorkload) kcmControllers() string { return "daemonset" }
func (daemonSetWorkload) completes() bool        { return false }

// setup creates the nodes: schedulable, Ready, untainted.
func (daemonSetWorkload) setup(ctx context.Context, client kubernetes.Interface, size int) error {
	for i := range size {
		n := &v1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-node-%04d", i), Labels: map[string]string{"bench": "yes"}},
			Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
				Allocatable: v1.ResourceList{v1.ResourcePods: resource.MustParse("110")}},
		}
		if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
		// Admission gives a new node the not-ready NoSchedule taint; no
		// node lifecycle controller runs to lift it for the Ready node.
		patch := []byte(`{"spec":{"taints":null}}`)
		if _, err := client.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("untainting node %s: %w", n.Name, err)
		}
	}
	return nil
}

// probe is a DaemonSet for no node, whose status is written.
func (daemonSetWorkload) probe(ctx context.Context, client kubernetes.Interface) (func() bool, error) {
	ds := benchDaemonSet()
	ds.Name = "probe"
	ds.Spec.Selector.MatchLabels["app"] = "probe"
	ds.Spec.Template.Labels["app"] = "probe"
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"bench": "none"}
	if _, err := client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	return func() bool {
		got, err := client.AppsV1().DaemonSets(ns).Get(ctx, "probe", metav1.GetOptions{})
		return err == nil && got.Status.ObservedGeneration >= 1
	}, nil
}

func benchDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromString("10%"))}},
			Template: v1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
				Spec: v1.PodSpec{NodeSelector: map[string]string{"bench": "yes"},
					Containers: []v1.Container{{Name: "app", Image: "registry.invalid/agent:1"}}},
			},
		},
	}
}

func (daemonSetWorkload) run(ctx context.Context, b *bench) error {
	pods, sets := b.factory.Core().V1().Pods().Informer(), b.factory.Apps().V1().DaemonSets().Informer()
	if err := b.sync(ctx, pods, sets); err != nil {
		return err
	}
	ds := benchDaemonSet()
	start := time.Now()
	if _, err := b.client.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the daemonset: %w", err)
	}
	if err := b.phase(ctx, "all pods created", start, func() bool { return livePods(pods) >= b.size }); err != nil {
		return err
	}
	if err := b.phase(ctx, "daemonset available", start, func() bool { return daemonSetRolledOut(sets, b.size, 1) }); err != nil {
		return err
	}
	start = time.Now()
	patch := []byte(`{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.invalid/agent:2"}]}}}}`)
	updated, err := b.client.AppsV1().DaemonSets(ns).Patch(ctx, "bench", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("updating the image: %w", err)
	}
	return b.phase(ctx, "rolling update complete", start, func() bool { return daemonSetRolledOut(sets, b.size, updated.Generation) })
}

// daemonSetRolledOut is `kubectl rollout status` of the DaemonSet
// succeeding for generation gen: every node's pod updated and available.
func daemonSetRolledOut(inf cache.SharedIndexInformer, nodes int, gen int64) bool {
	obj, ok, _ := inf.GetStore().GetByKey(ns + "/bench")
	if !ok {
		return false
	}
	d := obj.(*appsv1.DaemonSet)
	st, n := d.Status, int32(nodes)
	return d.Generation >= gen && st.ObservedGeneration >= d.Generation && st.DesiredNumberScheduled == n &&
		st.UpdatedNumberScheduled == n && st.NumberAvailable == n
}
