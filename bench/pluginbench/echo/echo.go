// Package echo is the controller the plugin benchmark runs twice, in the
// bench process and as a plugin process, to measure what the plugin
// boundary costs a reconcile: it marks every ConfigMap labelled
// pluginbench=echo with an annotation naming the resourceVersion it saw.
package echo

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/keelson/keelson/plugins/sdk"
)

// Label selects the ConfigMaps the controller reconciles.
const (
	LabelKey   = "pluginbench"
	LabelValue = "echo"
	// Annotation is set by the controller to the resourceVersion it saw.
	Annotation = "pluginbench/seen"
)

// Plugin is the echo controller as a plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin("pluginbench-echo", "0.0.1", setup,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = LabelKey + "=" + LabelValue }))
	p.Rules = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "patch"}}}
	return p
}

func setup(_ context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	inf := f.Core().V1().ConfigMaps()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[types.NamespacedName]())
	enqueue := func(obj any) {
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Annotations[Annotation] == "" {
			q.Add(types.NamespacedName{Namespace: cm.Namespace, Name: cm.Name})
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) },
	}); err != nil {
		return nil, err
	}
	lister := inf.Lister()
	return func(ctx context.Context) error {
		go func() { <-ctx.Done(); q.ShutDown() }()
		for {
			key, quit := q.Get()
			if quit {
				return nil
			}
			if err := reconcile(ctx, client, lister.ConfigMaps(key.Namespace).Get, key); err != nil {
				env.Logger.Warn("echo reconcile", "key", key, "err", err)
				q.AddRateLimited(key)
			} else {
				q.Forget(key)
			}
			q.Done(key)
		}
	}, nil
}

func reconcile(ctx context.Context, c kubernetes.Interface, get func(string) (*corev1.ConfigMap, error), key types.NamespacedName) error {
	cm, err := get(key.Name)
	if err != nil || cm.Annotations[Annotation] != "" {
		return nil // gone, or already done
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, Annotation, cm.ResourceVersion)
	_, err = c.CoreV1().ConfigMaps(key.Namespace).Patch(ctx, key.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return err
}
