// Command configmap-everywhere is an example third-party Keelson plugin: a
// controller-runtime operator that keeps one ConfigMap, with the data its
// configuration gives, in every namespace. It shows what an existing
// operator changes to become a plugin: its main calls sdk.ServeManager
// instead of building and starting a Manager itself.
//
// Build it, checksum it, and list it in the server's configuration:
//
//	go build -o /var/lib/keelson/plugins/configmap-everywhere ./examples/plugins/configmap-everywhere
//	sha256sum /var/lib/keelson/plugins/configmap-everywhere
//	keelson server --plugin configmap-everywhere=<sha256> \
//	  --plugin-config 'configmap-everywhere={"name":"cluster-info","data":{"region":"eu-1"}}'
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keelson/keelson/plugins/sdk"
)

// managedBy labels the ConfigMaps this operator owns.
const managedBy = "configmap-everywhere"

// Config is the plugin's configuration section.
type Config struct {
	// Name of the ConfigMap in every namespace; default "cluster-info".
	Name string `json:"name"`
	// Data is its content.
	Data map[string]string `json:"data"`
}

func parseConfig(raw json.RawMessage) (Config, error) {
	c := Config{Name: "cluster-info"}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return c, fmt.Errorf("configuration: %w", err)
		}
	}
	if errs := validation.IsDNS1123Subdomain(c.Name); len(errs) > 0 {
		return c, fmt.Errorf("configuration: name %q: %v", c.Name, errs)
	}
	return c, nil
}

func main() {
	p := sdk.Plugin{
		Name:    "configmap-everywhere",
		Kind:    sdk.KindController,
		Version: "0.1.0",
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}},
		},
	}
	// Cache only the ConfigMaps this plugin manages, not every ConfigMap of
	// the cluster: each plugin is its own process with its own cache.
	managed := labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": managedBy})
	sdk.ServeManager(p, setup, manager.Options{Cache: cache.Options{
		ByObject: map[client.Object]cache.ByObject{&corev1.ConfigMap{}: {Label: managed}},
	}})
}

// setup registers the reconciler: one request per namespace, triggered by
// the namespace and by any change to its managed ConfigMap.
func setup(_ context.Context, env sdk.Env, mgr manager.Manager) error {
	cfg, err := parseConfig(env.Config)
	if err != nil {
		return err
	}
	r := &reconciler{c: mgr.GetClient(), cfg: cfg}
	toNamespace := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("configmap-everywhere").
		For(&corev1.Namespace{}).
		Watches(&corev1.ConfigMap{}, toNamespace, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == cfg.Name
		}))).
		Complete(r)
}

type reconciler struct {
	c   client.Client
	cfg Config
}

// Reconcile makes the namespace's ConfigMap exist with the configured data.
func (r *reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var ns corev1.Namespace
	if err := r.c.Get(ctx, types.NamespacedName{Name: req.Name}, &ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp != nil {
		return reconcile.Result{}, nil // the namespace controller is emptying it
	}
	var cm corev1.ConfigMap
	err := r.c.Get(ctx, types.NamespacedName{Namespace: ns.Name, Name: r.cfg.Name}, &cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: r.cfg.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
			Data:       r.cfg.Data,
		}
		// AlreadyExists: a ConfigMap of that name that this plugin does not
		// manage (its cache holds only managed ones); it is left alone.
		return reconcile.Result{}, client.IgnoreAlreadyExists(r.c.Create(ctx, &cm))
	case err != nil:
		return reconcile.Result{}, err
	case maps.Equal(cm.Data, r.cfg.Data):
		return reconcile.Result{}, nil
	}
	cm.Data = r.cfg.Data
	return reconcile.Result{}, r.c.Update(ctx, &cm)
}
