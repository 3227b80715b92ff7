package server

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keelson/keelson/plugins/host"
)

// nodePluginLabel marks a node plugin's status object (PLUGIN.NODE) with
// its plugin; the node's host writes it (plugins/host/nodehost).
const nodePluginLabel = "keelson.io/node-plugin"

// nodePluginRules are what every node needs to run node plugins: read the
// declarations (that one ConfigMap only) and write Plugin status objects.
// The plugins themselves act with the node's identity, so they get no
// more than the node's own rights.
func nodePluginRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{host.NodePluginsConfigMap}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{pluginGVR.Group}, Resources: []string{pluginGVR.Resource}, Verbs: []string{"get", "create", "update"}},
	}
}

// publishNodePlugins writes the node plugin declarations where agents read
// them, when they differ from what is there.
func publishNodePlugins(ctx context.Context, c kubernetes.Interface, decls []host.NodePlugin) error {
	val, err := host.EncodeNodePlugins(decls)
	if err != nil {
		return fmt.Errorf("encoding the node plugin declarations: %w", err)
	}
	cms := c.CoreV1().ConfigMaps(host.NodePluginsNamespace)
	got, err := cms.Get(ctx, host.NodePluginsConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cm := &v1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: host.NodePluginsConfigMap, Namespace: host.NodePluginsNamespace},
			Data: map[string]string{host.NodePluginsKey: val}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("publishing the node plugin declarations: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading the node plugin declarations: %w", err)
	case got.Data[host.NodePluginsKey] == val:
		return nil
	}
	if got.Data == nil {
		got.Data = map[string]string{}
	}
	got.Data[host.NodePluginsKey] = val
	if _, err := cms.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("publishing the node plugin declarations: %w", err)
	}
	return nil
}
