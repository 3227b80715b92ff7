// Package serviceaccount is a built-in plugin that makes every active
// namespace usable by pods: it creates the namespace's "default"
// ServiceAccount (pods cannot be created before it exists) and publishes
// the cluster CA in the "kube-root-ca.crt" ConfigMap, which projected
// service-account volumes mount, and as the ClusterTrustBundle of the
// kubernetes.io/kube-apiserver-serving signer (trustbundle.go). It does
// what kube-controller-manager's serviceaccount-controller,
// root-ca-cert-publisher and
// kube-apiserver-serving-clustertrustbundle-publisher do.
package serviceaccount

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// Name is the plugin's name.
const Name = "serviceaccount"

// What every namespace gets.
const (
	DefaultServiceAccount = "default"
	RootCAConfigMap       = "kube-root-ca.crt"
	rootCAKey             = "ca.crt"
	descriptionAnnotation = "kubernetes.io/description"
	description           = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints " +
		"such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
)

// Config is the plugin's config section.
type Config struct {
	// Workers is how many namespaces are synced at once (default 1).
	Workers int `json:"workers"`
}

// Plugin returns the serviceaccount plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, "0.1.0", setup, informers.WithTransform(sdk.StripManagedFields))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"serviceaccounts"}, Verbs: []string{"get", "list", "watch", "create"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"clustertrustbundles"}, Verbs: []string{"list", "watch", "create", "update", "delete"}},
		// Publishing a bundle for a signer needs the right to attest for it.
		{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"}, Verbs: []string{"attest"}, ResourceNames: []string{ServingSigner}},
		sdk.EventRule,
	}
	return p
}

type controller struct {
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	configMaps corelisters.ConfigMapLister
	rootCA     string
	queue      workqueue.TypedRateLimitingInterface[string]
	logger     *slog.Logger
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 1}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 {
		return nil, sdk.ConfigErrorf("workers", "workers must be at least 1, got %d", cfg.Workers)
	}
	ca, err := clusterCA(env.RESTConfig)
	if err != nil {
		return nil, err
	}
	// Only the objects this plugin manages are cached: one ServiceAccount
	// and one ConfigMap per namespace, not all of them.
	byName := func(name string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}
	}
	saInformer := f.InformerFor(&corev1.ServiceAccount{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredServiceAccountInformer(c, metav1.NamespaceAll, resync,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, byName(DefaultServiceAccount))
	})
	cmInformer := f.InformerFor(&corev1.ConfigMap{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return coreinformers.NewFilteredConfigMapInformer(c, metav1.NamespaceAll, resync,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}, byName(RootCAConfigMap))
	})
	c := &controller{
		client:     client,
		namespaces: f.Core().V1().Namespaces().Lister(),
		accounts:   corelisters.NewServiceAccountLister(saInformer.GetIndexer()),
		configMaps: corelisters.NewConfigMapLister(cmInformer.GetIndexer()),
		rootCA:     ca,
		queue:      sdk.NewQueue[string](Name),
		logger:     env.Logger,
	}
	enqueueNamespaceOf := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			c.queue.Add(m.GetNamespace())
		}
	}
	enqueueNamespace := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.Status.Phase == corev1.NamespaceActive {
			c.queue.Add(ns.Name)
		}
	}
	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandlerFuncs
	}{
		{"namespaces", f.Core().V1().Namespaces().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: enqueueNamespace, UpdateFunc: func(_, obj any) { enqueueNamespace(obj) }}},
		{"serviceaccounts", saInformer, cache.ResourceEventHandlerFuncs{DeleteFunc: enqueueNamespaceOf}},
		{"configmaps", cmInformer, cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) { enqueueNamespaceOf(obj) }, DeleteFunc: enqueueNamespaceOf}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("watching %s: %w", h.what, err)
		}
	}
	runBundles, err := watchTrustBundles(f, client, ca, env)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		go runBundles(ctx)
		sdk.RunWorkers(ctx, c.queue, cfg.Workers, c.reconcile, c.logger)
		return nil
	}, nil
}

// clusterCA is the CA bundle the API server is served with: the one this
// plugin itself trusts to reach it.
func clusterCA(cfg *rest.Config) (string, error) {
	cfg = rest.CopyConfig(cfg)
	if err := rest.LoadTLSFiles(cfg); err != nil {
		return "", fmt.Errorf("reading the API server's CA bundle: %w", err)
	}
	if len(cfg.CAData) == 0 {
		return "", errors.New("the plugin's API connection has no CA bundle (RESTConfig.CAData) to publish as " + RootCAConfigMap)
	}
	return string(cfg.CAData), nil
}

// reconcile gives an active namespace its default ServiceAccount and its
// up-to-date root CA ConfigMap.
func (c *controller) reconcile(ctx context.Context, name string) (sdk.Result, error) {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return sdk.Result{}, nil
	}
	if err != nil {
		return sdk.Result{}, err
	}
	if ns.Status.Phase != corev1.NamespaceActive {
		return sdk.Result{}, nil // nothing is created in a terminating namespace
	}
	return sdk.Result{}, errors.Join(c.ensureServiceAccount(ctx, name), c.ensureRootCA(ctx, name))
}

func (c *controller) ensureServiceAccount(ctx context.Context, ns string) error {
	if _, err := c.accounts.ServiceAccounts(ns).Get(DefaultServiceAccount); err == nil {
		return nil
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultServiceAccount, Namespace: ns}}
	_, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	switch {
	case err == nil:
		c.logger.Info("created service account", "serviceaccount", ns+"/"+DefaultServiceAccount)
		return nil
	case apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return nil
	}
	return fmt.Errorf("creating service account %s/%s: %w", ns, DefaultServiceAccount, err)
}

func (c *controller) ensureRootCA(ctx context.Context, ns string) error {
	want := map[string]string{rootCAKey: c.rootCA}
	api := c.client.CoreV1().ConfigMaps(ns)
	cm, err := c.configMaps.ConfigMaps(ns).Get(RootCAConfigMap)
	if apierrors.IsNotFound(err) {
		_, err := api.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: RootCAConfigMap, Namespace: ns,
				Annotations: map[string]string{descriptionAnnotation: description}},
			Data: want,
		}, metav1.CreateOptions{})
		switch {
		case err == nil:
			c.logger.Info("published root CA", "configmap", ns+"/"+RootCAConfigMap)
			return nil
		case apierrors.IsAlreadyExists(err), apierrors.IsNotFound(err), apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
			return nil
		}
		return fmt.Errorf("creating configmap %s/%s: %w", ns, RootCAConfigMap, err)
	}
	if err != nil {
		return err
	}
	if maps.Equal(cm.Data, want) && cm.Annotations[descriptionAnnotation] != "" {
		return nil
	}
	cm = cm.DeepCopy()
	cm.Data = want
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[descriptionAnnotation] = description
	if _, err := api.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("restoring configmap %s/%s: %w", ns, RootCAConfigMap, err)
	}
	c.logger.Info("restored root CA", "configmap", ns+"/"+RootCAConfigMap)
	return nil
}
