package token

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/keelson/keelson/plugins/builtin/internal/pods"
)

// The legacy token cleaner, kube-controller-manager's
// legacy-serviceaccount-token-cleaner: a token Secret that a ServiceAccount
// lists (an auto-generated one, from before 1.24 or added by hand), that no
// pod of its namespace uses and that has not been used for cleanUpPeriod is
// first labelled invalid (kube-apiserver then refuses the token), and
// deleted once it has been invalid for cleanUpPeriod too. Usage dates are
// the ones kube-apiserver records: the label lastUsedLabel on the Secret,
// and, for how long it has been recording them, the tracking ConfigMap.
const (
	lastUsedLabel     = "kubernetes.io/legacy-token-last-used"
	invalidSinceLabel = "kubernetes.io/legacy-token-invalid-since"
	trackingConfigMap = "kube-apiserver-legacy-service-account-token-tracking"
	trackingSinceKey  = "since"
	dateFormat        = "2006-01-02"

	// DefaultCleanUpPeriod is kube-controller-manager's
	// --legacy-service-account-token-clean-up-period.
	DefaultCleanUpPeriod = 365 * 24 * time.Hour
	// DefaultCleanerInterval is how often the tokens are looked at.
	DefaultCleanerInterval = 24 * time.Hour
)

// runCleaner looks at the legacy tokens every interval until ctx ends.
func (c *controller) runCleaner(ctx context.Context, interval time.Duration) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.cleanTokens(ctx); err != nil {
			c.logger.Error("cleaning legacy service-account tokens", "err", err)
		}
	}, interval)
}

// cleanTokens is one pass of the cleaner over the cached token Secrets.
func (c *controller) cleanTokens(ctx context.Context) error {
	now := c.clock.Now().UTC()
	since, err := c.trackedSince(ctx)
	if err != nil {
		return err
	}
	if now.Before(since.Add(c.cleanUpPeriod)) {
		return nil // usage has not been recorded for long enough
	}
	keepSince := now.Add(-c.cleanUpPeriod)
	keepDate := keepSince.Format(dateFormat)
	secrets, err := c.secrets.List(labels.Everything())
	if err != nil {
		return err
	}
	inUse := map[string]map[string]bool{} // namespace -> secrets its pods use
	for _, s := range secrets {
		if s.Type != corev1.SecretTypeServiceAccountToken || s.DeletionTimestamp != nil ||
			!s.CreationTimestamp.Time.Before(keepSince) {
			continue
		}
		if used, ok := s.Labels[lastUsedLabel]; ok {
			if _, err := time.Parse(dateFormat, used); err != nil || used >= keepDate {
				continue // used recently, or a date that cannot be judged
			}
		}
		if err := c.cleanToken(ctx, s, now, keepDate, inUse); err != nil {
			c.logger.Error("cleaning legacy service-account token", "secret", s.Namespace+"/"+s.Name, "err", err)
		}
	}
	return nil
}

// trackedSince is the first whole day kube-apiserver has recorded token
// usage from.
func (c *controller) trackedSince(ctx context.Context) (time.Time, error) {
	cm, err := c.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, trackingConfigMap, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("reading when token usage tracking started: %w", err)
	}
	since, err := time.Parse(dateFormat, cm.Data[trackingSinceKey])
	if err != nil {
		return time.Time{}, fmt.Errorf("configmap %s/%s: %s %q is not a date: %w",
			metav1.NamespaceSystem, trackingConfigMap, trackingSinceKey, cm.Data[trackingSinceKey], err)
	}
	return since.AddDate(0, 0, 1), nil
}

// cleanToken labels the unused auto-generated token s invalid, or deletes
// it if it has been invalid long enough.
func (c *controller) cleanToken(ctx context.Context, s *corev1.Secret, now time.Time, keepDate string, inUse map[string]map[string]bool) error {
	listed, err := c.listedByAccount(ctx, s)
	if err != nil || !listed {
		return err // not known to be auto-generated: left alone
	}
	used, ok := inUse[s.Namespace]
	if !ok {
		if used, err = c.podSecrets(ctx, s.Namespace); err != nil {
			return err
		}
		inUse[s.Namespace] = used
	}
	if used[s.Name] {
		return nil
	}
	invalid := s.Labels[invalidSinceLabel]
	if _, err := time.Parse(dateFormat, invalid); err != nil {
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
			"uid": s.UID, "labels": map[string]string{invalidSinceLabel: now.Format(dateFormat)}}})
		if _, err := c.client.CoreV1().Secrets(s.Namespace).Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("labelling it invalid: %w", err)
		}
		c.logger.Info("labelled unused legacy service-account token invalid", "secret", s.Namespace+"/"+s.Name)
		return nil
	}
	if invalid >= keepDate {
		return nil
	}
	rv := s.ResourceVersion
	err = c.client.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting it: %w", err)
	}
	c.logger.Info("deleted legacy service-account token unused since it was invalidated",
		"secret", s.Namespace+"/"+s.Name, "lastUsed", s.Labels[lastUsedLabel], "invalidSince", invalid)
	return nil
}

// listedByAccount reports whether the token's ServiceAccount (the one its
// annotations name, with a matching UID if given) lists it in secrets. The
// account is read live: the cache keeps only accounts' identities.
func (c *controller) listedByAccount(ctx context.Context, s *corev1.Secret) (bool, error) {
	name := s.Annotations[corev1.ServiceAccountNameKey]
	if name == "" {
		return false, nil
	}
	sa, err := c.client.CoreV1().ServiceAccounts(s.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if uid := types.UID(s.Annotations[corev1.ServiceAccountUIDKey]); uid != "" && uid != sa.UID {
		return false, nil
	}
	for _, ref := range sa.Secrets {
		if ref.Name == s.Name {
			return true, nil
		}
	}
	return false, nil
}

// podSecrets lists the Secrets the pods of ns use (read live: the plugin
// caches no pods, and the cleaner runs once a day).
func (c *controller) podSecrets(ctx context.Context, ns string) (map[string]bool, error) {
	list, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", ns, err)
	}
	out := map[string]bool{}
	for i := range list.Items {
		for name := range pods.SecretNames(&list.Items[i]) {
			out[name] = true
		}
	}
	return out, nil
}
