package localpath

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// ClassName is the default StorageClass this plugin keeps.
const ClassName = "local-path"

// annDefaultClass marks the StorageClass claims without a class get.
const annDefaultClass = "storageclass.kubernetes.io/is-default-class"

// DefaultClass is the StorageClass created when none of its name exists.
func DefaultClass() *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:           metav1.ObjectMeta{Name: ClassName, Annotations: map[string]string{annDefaultClass: "true"}},
		Provisioner:          localstorage.Provisioner,
		ReclaimPolicy:        ptr.To(v1.PersistentVolumeReclaimDelete),
		VolumeBindingMode:    ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
		AllowVolumeExpansion: ptr.To(true),
	}
}

// ensureClass creates the default class unless one of its name exists
// (then it is the administrator's, and left alone).
func (c *controller) ensureClass(ctx context.Context, name string) (sdk.Result, error) {
	if _, err := c.classes.Get(name); err == nil {
		return sdk.Result{}, nil
	}
	_, err := c.client.StorageV1().StorageClasses().Create(ctx, DefaultClass(), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return sdk.Result{}, nil
	case err != nil:
		return sdk.Result{}, fmt.Errorf("creating the default StorageClass %q: %w", name, err)
	}
	c.logger.Info("created the default StorageClass", "storageClass", name, "provisioner", localstorage.Provisioner)
	return sdk.Result{}, nil
}
