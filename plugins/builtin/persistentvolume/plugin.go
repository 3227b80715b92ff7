// Package persistentvolume is the built-in PersistentVolume controller
// plugin. It does the work of kube-controller-manager's volume
// controllers: the binder (claims bound to matching volumes by capacity,
// access modes, class, selector, volumeMode and volumeName; pre-bound
// claimRefs honoured; claims of a class handed to its provisioner, at once
// or once the scheduler chose a node; phases, the bind annotations and
// reclaim of released volumes), the pvc-protection, pv-protection and
// vac-protection finalizers (and the claims' Unused condition), and the
// generic ephemeral volume controller (a claim <pod>-<volume> owned by the
// pod). It follows
// upstream v1.37 and uses k8s.io/component-helpers/storage for the
// matching rules the scheduler shares.
package persistentvolume

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin persistentvolume`).
const Name = "persistentvolume"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many claims (and, separately, volumes) are synced at
	// once (default 1, as upstream's binder, which syncs one of each at a
	// time so that two claims never race for one volume).
	Workers int `json:"workers"`
	// ResyncPeriod is how often every claim and volume is looked at again
	// without a change (default 15s, kube-controller-manager's
	// --pvclaimbinder-sync-period): a claim waiting for a volume that
	// appears finds it, events about pending claims are repeated.
	ResyncPeriod metav1.Duration `json:"resyncPeriod"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list", "watch"}},
		// blockOwnerDeletion on the owner reference of an ephemeral
		// volume's claim.
		{APIGroups: []string{""}, Resources: []string{"pods/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"volumeattributesclasses"}, Verbs: []string{"get", "list", "watch", "update"}},
		sdk.EventRule,
	}
	return p
}

func parseConfig(env sdk.Env) (Config, error) {
	cfg := Config{Workers: 1, ResyncPeriod: metav1.Duration{Duration: 15 * time.Second}}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return cfg, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return cfg, sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", cfg.Workers)
	}
	if cfg.ResyncPeriod.Duration < time.Second {
		return cfg, sdk.ConfigErrorf("resyncPeriod", "resyncPeriod is %s: set it to at least 1s, such as 15s", cfg.ResyncPeriod.Duration)
	}
	return cfg, nil
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg, err := parseConfig(env)
	if err != nil {
		return nil, err
	}
	c, err := newController(client, f, env.Logger, clock.RealClock{})
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c.events = sdk.NewEventRecorder(ctx, client, component)
		c.ephemeralEvents = sdk.NewEventRecorder(ctx, client, ephemeralComponent)
		env.Logger.Info("controller started", "workers", cfg.Workers, "resyncPeriod", cfg.ResyncPeriod.Duration)
		c.run(ctx, cfg.Workers, cfg.ResyncPeriod.Duration)
		return nil
	}, nil
}

// transform keeps of a pod what the controllers read: identity, node,
// deletion, phase, container states and the volumes that name claims;
// other objects lose their managedFields only (claims and volumes are
// written back whole).
func transform(obj any) (any, error) {
	p, ok := obj.(*v1.Pod)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp, DeletionGracePeriodSeconds: p.DeletionGracePeriodSeconds,
		},
		Spec:   v1.PodSpec{NodeName: p.Spec.NodeName},
		Status: v1.PodStatus{Phase: p.Status.Phase},
	}
	for _, vol := range p.Spec.Volumes {
		if vol.PersistentVolumeClaim != nil || vol.Ephemeral != nil {
			s.Spec.Volumes = append(s.Spec.Volumes, v1.Volume{Name: vol.Name, VolumeSource: v1.VolumeSource{
				PersistentVolumeClaim: vol.PersistentVolumeClaim, Ephemeral: vol.Ephemeral}})
		}
	}
	s.Status.InitContainerStatuses = containerStates(p.Status.InitContainerStatuses)
	s.Status.ContainerStatuses = containerStates(p.Status.ContainerStatuses)
	s.Status.EphemeralContainerStatuses = containerStates(p.Status.EphemeralContainerStatuses)
	return s, nil
}

// containerStates keeps whether each container is waiting, running or
// terminated: what tells a terminated pod.
func containerStates(in []v1.ContainerStatus) []v1.ContainerStatus {
	if len(in) == 0 {
		return nil
	}
	out := make([]v1.ContainerStatus, len(in))
	for i, s := range in {
		out[i].Name = s.Name
		switch {
		case s.State.Terminated != nil:
			out[i].State.Terminated = &v1.ContainerStateTerminated{}
		case s.State.Waiting != nil:
			out[i].State.Waiting = &v1.ContainerStateWaiting{}
		case s.State.Running != nil:
			out[i].State.Running = &v1.ContainerStateRunning{}
		}
	}
	return out
}

// PodTransform is the transform the plugin's informers run, pods among
// them (BenchmarkPodCacheBytes in plugins/builtin measures it).
var PodTransform = transform
