package plugininstall

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
)

// Apply creates the record's PluginInstall, or replaces the spec of the one
// of that name (a new executable, approval or configuration restarts the
// plugin). It reports whether the object was created.
func Apply(ctx context.Context, dyn dynamic.Interface, r Record) (created bool, err error) {
	obj, err := r.Object()
	if err != nil {
		return false, err
	}
	res := dyn.Resource(GVR)
	got, err := res.Get(ctx, r.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err) && notServed(err):
		return false, errNotServed
	case apierrors.IsNotFound(err):
		if _, err := res.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("creating PluginInstall %s: %w", r.Name, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading PluginInstall %s: %w", r.Name, err)
	}
	got.Object["spec"] = obj.Object["spec"]
	if _, err := res.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		return false, fmt.Errorf("updating PluginInstall %s: %w", r.Name, err)
	}
	return false, nil
}

// Remove deletes the PluginInstall name; the leader stops the plugin and
// every server drops its executable.
func Remove(ctx context.Context, dyn dynamic.Interface, name string) error {
	err := dyn.Resource(GVR).Delete(ctx, name, metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err) && notServed(err):
		return errNotServed
	case apierrors.IsNotFound(err):
		return fmt.Errorf("no plugin %q is installed (see kubectl get plugininstalls)", name)
	case err != nil:
		return fmt.Errorf("deleting PluginInstall %s: %w", name, err)
	}
	return nil
}

var errNotServed = fmt.Errorf("the API does not serve PluginInstall objects yet: the raft leader installs their definition when it starts its plugins; wait until `keelson plugins` lists them and retry")

// notServed tells a 404 for the resource (no CRD) from one for the object.
func notServed(err error) bool {
	st, ok := err.(apierrors.APIStatus)
	if !ok {
		return false
	}
	d := st.Status().Details
	return d == nil || d.Name == ""
}
