// Package token is the legacy service-account token controller as a
// built-in plugin. It fills every Secret of type
// kubernetes.io/service-account-token (created by a user, annotated with
// the ServiceAccount it is for) with a non-expiring token signed with the
// cluster's service-account key, the cluster CA and the namespace; deletes
// such Secrets when their ServiceAccount is deleted; and drops a deleted
// Secret's reference from its ServiceAccount. Like upstream since 1.24, it
// never creates token Secrets by itself: pods get bound, expiring tokens
// through the TokenRequest API instead. It also runs the legacy token
// cleaner (cleaner.go).
//
// The TokenRequest API cannot mint these tokens (it only issues bound,
// expiring ones), so the plugin signs them itself, as kube-controller-manager
// does with --service-account-private-key-file. The key comes in the
// plugin's config section, {"serviceAccountKeyPEM": "..."}: the host reads
// it from the server's PKI, and the plugin never touches the server's files.
package token

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "token"

// Config is the plugin's config section.
type Config struct {
	// ServiceAccountKeyPEM is the private key the API server verifies
	// service-account tokens with (the PEM of --service-account-key-file's
	// private half). Required.
	ServiceAccountKeyPEM string `json:"serviceAccountKeyPEM"`
	// Workers is how many objects are synced at once (default 1).
	Workers int `json:"workers"`
	// CleanUpPeriod is how long an auto-generated token must have gone
	// unused before it is labelled invalid, and then how long it stays
	// invalid before it is deleted (kube-controller-manager's
	// --legacy-service-account-token-clean-up-period; default a year).
	CleanUpPeriod metav1.Duration `json:"cleanUpPeriod"`
	// CleanerInterval is how often the legacy tokens are looked at
	// (default a day).
	CleanerInterval metav1.Duration `json:"cleanerInterval"`
}

// Plugin returns the token plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "list", "watch", "update"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "list", "watch", "update", "patch", "delete"}},
		// The legacy token cleaner: which pods use a token, and since when
		// kube-apiserver records token usage.
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}, ResourceNames: []string{trackingConfigMap}},
	}
	return p
}

// transform keeps only the identity of ServiceAccounts (their secrets list
// is read live when it is edited).
func transform(obj any) (any, error) {
	if sa, ok := obj.(*corev1.ServiceAccount); ok {
		return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: sa.Name, Namespace: sa.Namespace, UID: sa.UID, ResourceVersion: sa.ResourceVersion,
		}}, nil
	}
	return sdk.StripManagedFields(obj)
}

// key is a queued object: a ServiceAccount, or a token Secret with the
// ServiceAccount it names. Keeping the UIDs in the key lets a deleted
// object be told from a recreated one of the same name.
type key struct {
	secret    bool
	namespace string
	name      string
	uid       types.UID
	saName    string
	saUID     types.UID
}

type controller struct {
	client   kubernetes.Interface
	accounts corelisters.ServiceAccountLister
	secrets  corelisters.SecretLister
	signer   *signer
	rootCA   []byte
	queue    workqueue.TypedRateLimitingInterface[key]
	logger   *slog.Logger

	clock         clock.Clock
	cleanUpPeriod time.Duration
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 1, CleanUpPeriod: metav1.Duration{Duration: DefaultCleanUpPeriod},
		CleanerInterval: metav1.Duration{Duration: DefaultCleanerInterval}}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.CleanUpPeriod.Duration < 24*time.Hour {
		return nil, sdk.ConfigErrorf("cleanUpPeriod", "cleanUpPeriod is %s: usage is recorded by the day, so it must be at least 24h", cfg.CleanUpPeriod.Duration)
	}
	if cfg.CleanerInterval.Duration <= 0 {
		return nil, sdk.ConfigErrorf("cleanerInterval", "cleanerInterval is %s: it must be positive (default 24h)", cfg.CleanerInterval.Duration)
	}
	if cfg.ServiceAccountKeyPEM == "" {
		return nil, sdk.ConfigErrorf("serviceAccountKeyPEM", `serviceAccountKeyPEM is required: the PEM private key the API server verifies service-account tokens with`)
	}
	if cfg.Workers < 1 {
		return nil, sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	s, err := newSigner([]byte(cfg.ServiceAccountKeyPEM))
	if err != nil {
		return nil, &sdk.ConfigError{Key: "serviceAccountKeyPEM", Err: fmt.Errorf("serviceAccountKeyPEM: %w", err)}
	}
	rc := rest.CopyConfig(env.RESTConfig)
	if err := rest.LoadTLSFiles(rc); err != nil {
		return nil, fmt.Errorf("reading the API server's CA bundle: %w", err)
	}
	secretInformer := f.InformerFor(&corev1.Secret{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredSecretInformer(c, metav1.NamespaceAll, resync,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
			func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("type", string(corev1.SecretTypeServiceAccountToken)).String()
			})
	})
	c := &controller{
		client:   client,
		accounts: f.Core().V1().ServiceAccounts().Lister(),
		secrets:  corelisters.NewSecretLister(secretInformer.GetIndexer()),
		signer:   s,
		rootCA:   rc.CAData,
		queue:    sdk.NewQueue[key](Name),
		logger:   env.Logger,

		clock:         clock.RealClock{},
		cleanUpPeriod: cfg.CleanUpPeriod.Duration,
	}
	if _, err := f.Core().V1().ServiceAccounts().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queueAccount, UpdateFunc: func(_, obj any) { c.queueAccount(obj) }, DeleteFunc: c.queueAccount,
	}); err != nil {
		return nil, fmt.Errorf("watching serviceaccounts: %w", err)
	}
	if _, err := secretInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.queueSecret, UpdateFunc: func(_, obj any) { c.queueSecret(obj) }, DeleteFunc: c.queueSecret,
	}); err != nil {
		return nil, fmt.Errorf("watching secrets: %w", err)
	}
	return func(ctx context.Context) error {
		go c.runCleaner(ctx, cfg.CleanerInterval.Duration)
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (c *controller) queueAccount(obj any) {
	if sa, ok := unwrap(obj).(*corev1.ServiceAccount); ok {
		c.queue.Add(key{namespace: sa.Namespace, name: sa.Name, uid: sa.UID})
	}
}

func (c *controller) queueSecret(obj any) {
	s, ok := unwrap(obj).(*corev1.Secret)
	if !ok || s.Type != corev1.SecretTypeServiceAccountToken {
		return
	}
	saName := s.Annotations[corev1.ServiceAccountNameKey]
	if saName == "" {
		return // the API refuses such a secret; nothing to act on
	}
	c.queue.Add(key{secret: true, namespace: s.Namespace, name: s.Name, uid: s.UID,
		saName: saName, saUID: types.UID(s.Annotations[corev1.ServiceAccountUIDKey])})
}
