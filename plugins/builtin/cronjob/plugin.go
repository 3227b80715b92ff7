// Package cronjob is the built-in CronJob controller plugin: it creates a
// Job named <cronjob>-<scheduled time in minutes> at each time of a
// CronJob's schedule (standard cron syntax, parsed by robfig/cron/v3, in
// spec.timeZone), honouring startingDeadlineSeconds, concurrencyPolicy
// (Allow, Forbid, Replace) and suspend; keeps status.active,
// lastScheduleTime and lastSuccessfulTime; deletes finished Jobs beyond
// the history limits; and writes the Events kube-controller-manager's
// cronjob controller writes. It wakes each CronJob at its next schedule
// time on an injected clock.
package cronjob

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin cronjob`).
const Name = "cronjob"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many CronJobs are reconciled at once (default 5, as
	// kube-controller-manager's --concurrent-cron-job-syncs).
	Workers int `json:"workers"`
}

// ParseConfig reads raw (may be empty) over the defaults and validates it.
func ParseConfig(raw []byte) (Config, error) {
	c := Config{Workers: 5}
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return Config{}, fmt.Errorf("plugin %s: %w", Name, err)
	}
	if c.Workers < 1 || c.Workers > 64 {
		return Config{}, fmt.Errorf("plugin %s config: workers is %d: set it between 1 and 64", Name, c.Workers)
	}
	return c, nil
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.Plugin{Name: Name, Kind: sdk.KindController, Version: version, ManualReady: true}
	p.Run = func(ctx context.Context, env sdk.Env) error {
		cfg, err := ParseConfig(env.Config)
		if err != nil {
			return err
		}
		setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
			c, err := New(cfg, client, factory, env.Logger, clock.RealClock{})
			if err != nil {
				return nil, err
			}
			return c.Run, nil
		}
		return sdk.InformerPlugin(Name, version, setup, informers.WithTransform(Transform)).Run(ctx, env)
	}
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{"batch"}, Resources: []string{"cronjobs/status", "cronjobs/finalizers"}, Verbs: []string{"update"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		sdk.EventRule,
	}
	return p
}

// Transform keeps of a Job only what the controller reads (identity,
// owners, creation, start and completion times, conditions); CronJobs lose
// their managedFields.
func Transform(obj any) (any, error) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: j.Name, Namespace: j.Namespace, UID: j.UID, ResourceVersion: j.ResourceVersion,
			OwnerReferences: j.OwnerReferences, CreationTimestamp: j.CreationTimestamp, DeletionTimestamp: j.DeletionTimestamp,
		},
		Status: batchv1.JobStatus{StartTime: j.Status.StartTime, CompletionTime: j.Status.CompletionTime},
	}
	for _, c := range j.Status.Conditions {
		s.Status.Conditions = append(s.Status.Conditions, batchv1.JobCondition{Type: c.Type, Status: c.Status})
	}
	return s, nil
}
