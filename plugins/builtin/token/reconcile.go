package token

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/keelson/keelson/plugins/sdk"
)

func (k key) String() string {
	if k.secret {
		return fmt.Sprintf("secret %s/%s (serviceaccount %s)", k.namespace, k.name, k.saName)
	}
	return fmt.Sprintf("serviceaccount %s/%s", k.namespace, k.name)
}

func (c *controller) reconcile(ctx context.Context, k key) (sdk.Result, error) {
	if k.secret {
		return sdk.Result{}, c.syncSecret(ctx, k)
	}
	return sdk.Result{}, c.syncAccount(ctx, k)
}

// syncAccount deletes the token secrets of a deleted ServiceAccount.
func (c *controller) syncAccount(ctx context.Context, k key) error {
	if sa, err := c.accounts.ServiceAccounts(k.namespace).Get(k.name); err == nil && sa.UID == k.uid {
		return nil
	}
	secrets, err := c.secrets.Secrets(k.namespace).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, s := range secrets {
		if !isTokenFor(s, k.name, k.uid) {
			continue
		}
		if err := c.deleteSecret(ctx, s.Namespace, s.Name, s.UID); err != nil {
			return err
		}
		c.logger.Info("deleted token of a deleted service account", "secret", s.Namespace+"/"+s.Name, "serviceaccount", k.name)
	}
	return nil
}

// isTokenFor reports whether s is a token secret of service account name
// (uid): it names it, and names its UID if it names one.
func isTokenFor(s *corev1.Secret, name string, uid types.UID) bool {
	if s.Type != corev1.SecretTypeServiceAccountToken || s.Annotations[corev1.ServiceAccountNameKey] != name {
		return false
	}
	u := s.Annotations[corev1.ServiceAccountUIDKey]
	return u == "" || types.UID(u) == uid
}

// syncSecret fills a token secret, deletes it if its ServiceAccount is
// gone, or, when the secret itself is gone, drops the ServiceAccount's
// reference to it.
func (c *controller) syncSecret(ctx context.Context, k key) error {
	secret, err := c.secrets.Secrets(k.namespace).Get(k.name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if secret == nil || secret.UID != k.uid {
		if sa, _ := c.account(ctx, k.namespace, k.saName, k.saUID, false); sa != nil {
			return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
				return c.removeReference(ctx, k)
			})
		}
		return nil
	}
	sa, err := c.account(ctx, k.namespace, k.saName, k.saUID, true)
	if err != nil {
		return err
	}
	if sa == nil {
		c.logger.Info("deleting token of a missing service account", "secret", k.namespace+"/"+k.name, "serviceaccount", k.saName)
		return c.deleteSecret(ctx, k.namespace, k.name, k.uid)
	}
	return c.populate(ctx, sa, secret)
}

// account returns the ServiceAccount ns/name if it exists with uid (any
// UID when uid is empty), from the cache or, with live, from the API when
// the cache does not have it yet.
func (c *controller) account(ctx context.Context, ns, name string, uid types.UID, live bool) (*corev1.ServiceAccount, error) {
	match := func(sa *corev1.ServiceAccount) *corev1.ServiceAccount {
		if uid == "" || sa.UID == uid {
			return sa
		}
		return nil
	}
	if sa, err := c.accounts.ServiceAccounts(ns).Get(name); err == nil && match(sa) != nil {
		return sa, nil
	}
	if !live {
		return nil, nil
	}
	sa, err := c.client.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("getting service account %s/%s: %w", ns, name, err)
	}
	return match(sa), nil
}

func (c *controller) deleteSecret(ctx context.Context, ns, name string, uid types.UID) error {
	err := c.client.CoreV1().Secrets(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err == nil || apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by a new secret with its own key
	}
	return fmt.Errorf("deleting token secret %s/%s: %w", ns, name, err)
}

// missing reports what a token secret lacks.
func (c *controller) missing(s *corev1.Secret) (ca, namespace, token bool) {
	ca = len(c.rootCA) > 0 && !bytes.Equal(s.Data[corev1.ServiceAccountRootCAKey], c.rootCA)
	namespace = len(s.Data[corev1.ServiceAccountNamespaceKey]) == 0
	token = len(s.Data[corev1.ServiceAccountTokenKey]) == 0
	return ca, namespace, token
}

// populate writes what the secret lacks: the CA, the namespace, a token.
// It works on the live secret, and only if the cache was current: a token
// is never written over a change this controller has not seen.
func (c *controller) populate(ctx context.Context, sa *corev1.ServiceAccount, cached *corev1.Secret) error {
	if ca, ns, tok := c.missing(cached); !ca && !ns && !tok {
		return nil
	}
	api := c.client.CoreV1().Secrets(cached.Namespace)
	live, err := api.Get(ctx, cached.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("getting token secret %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	if live.ResourceVersion != cached.ResourceVersion {
		return nil // the newer version's event queues the secret again
	}
	ca, ns, tok := c.missing(live)
	if live.Data == nil {
		live.Data = map[string][]byte{}
	}
	if live.Annotations == nil {
		live.Annotations = map[string]string{}
	}
	if ca {
		live.Data[corev1.ServiceAccountRootCAKey] = c.rootCA
	}
	if ns {
		live.Data[corev1.ServiceAccountNamespaceKey] = []byte(live.Namespace)
	}
	if tok {
		t, err := c.signer.token(sa.Namespace, sa.Name, string(sa.UID), live.Name)
		if err != nil {
			return fmt.Errorf("signing a token for secret %s/%s: %w", live.Namespace, live.Name, err)
		}
		live.Data[corev1.ServiceAccountTokenKey] = []byte(t)
	}
	live.Annotations[corev1.ServiceAccountNameKey] = sa.Name
	live.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	_, err = api.Update(ctx, live, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // changed or gone meanwhile; its event brings it back
	}
	if err != nil {
		return fmt.Errorf("writing token secret %s/%s: %w", live.Namespace, live.Name, err)
	}
	c.logger.Info("populated token secret", "secret", live.Namespace+"/"+live.Name, "serviceaccount", sa.Name, "token", tok)
	return nil
}

// removeReference drops a deleted secret from its ServiceAccount's
// secrets list.
func (c *controller) removeReference(ctx context.Context, k key) error {
	api := c.client.CoreV1().ServiceAccounts(k.namespace)
	sa, err := api.Get(ctx, k.saName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if k.saUID != "" && sa.UID != k.saUID {
		return nil
	}
	i := slices.IndexFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == k.name })
	if i < 0 {
		return nil
	}
	sa.Secrets = slices.DeleteFunc(sa.Secrets, func(r corev1.ObjectReference) bool { return r.Name == k.name })
	_, err = api.Update(ctx, sa, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
