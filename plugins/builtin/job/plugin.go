// Package job is the built-in Job controller plugin: it runs a Job's pods
// to completion (NonIndexed or Indexed completion mode, parallelism,
// completions), retries failures with exponential backoff up to
// backoffLimit or backoffLimitPerIndex, applies podFailurePolicy and
// successPolicy, enforces activeDeadlineSeconds, suspends and resumes, and
// writes the conditions (SuccessCriteriaMet, FailureTarget, Complete,
// Failed, Suspended) and Events kube-controller-manager's job controller
// writes. Pods are tracked with the batch.kubernetes.io/job-tracking
// finalizer and status.uncountedTerminatedPods, so a finished pod is
// counted exactly once across controller restarts and leader failovers.
package job

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name (`keelson plugin job`).
const Name = "job"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many Jobs are reconciled at once (default 5, as
	// kube-controller-manager's --concurrent-job-syncs).
	Workers int `json:"workers"`
	sdk.ClientLimits
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
	if err := c.ClientLimits.Validate(); err != nil {
		return Config{}, fmt.Errorf("plugin %s config: %w", Name, err)
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
		env.RESTConfig = cfg.ClientLimits.Apply(env.RESTConfig)
		setup := func(ctx context.Context, env sdk.Env, client kubernetes.Interface, factory informers.SharedInformerFactory) (func(context.Context) error, error) {
			c, err := New(cfg, client, factory, env.Logger, clock.RealClock{})
			if err != nil {
				return nil, err
			}
			return c.Run, nil
		}
		return sdk.InformerPlugin(Name, version, setup, informers.WithTransform(sdk.StripManagedFields)).Run(ctx, env)
	}
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch"}},
		// finalizers: a pod's ownerReference with blockOwnerDeletion needs
		// update on the Job's finalizers.
		{APIGroups: []string{"batch"}, Resources: []string{"jobs/status", "jobs/finalizers"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete", "patch"}},
		sdk.EventRule,
	}
	return p
}

// isFinished reports whether job has a true Complete or Failed condition.
func isFinished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == "True" {
			return true
		}
	}
	return false
}
