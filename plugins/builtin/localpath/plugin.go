// Package localpath is the built-in local-path provisioner plugin, the
// default storage of a Keelson cluster (k3s ships the same idea): it keeps
// a default StorageClass "local-path" (WaitForFirstConsumer, reclaim
// Delete), and for each claim of a class whose provisioner is
// keelson.io/local-path it creates, once the scheduler chose the pod's
// node, a `local` PersistentVolume pinned to that node whose directory is
// <storage dir>/<volume name> on it. The node's agent makes the directory
// when a pod mounts the volume and removes it when this plugin asks, after
// the volume was released with reclaim Delete; the volume object goes
// only after its directory did (the external-provisioner finalizer holds
// it). The node bounds the directory to the claim's size where its
// filesystem can (a btrfs subvolume with a qgroup limit, or a project
// quota on xfs/ext4) and the volume says whether it does
// (keelson.io/capacity-enforced). A larger request on a bound claim raises
// the bound on the node, then the volume's capacity and the claim's
// status, as an external resizer does. It follows the semantics
// of sig-storage's external provisioner and resizer.
package localpath

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	v1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	"github.com/keelson/keelson/plugins/builtin/internal/tombstone"
	"github.com/keelson/keelson/plugins/sdk"
	"github.com/keelson/keelson/plugins/sdk/localstorage"
)

// Name is the plugin's name (`keelson plugin localpath`).
const Name = "localpath"

const version = "0.1.0"

// Config is the plugin's configuration section.
type Config struct {
	// Workers is how many claims (and, separately, volumes) are handled at
	// once (default 4).
	Workers int `json:"workers"`
	// DefaultStorageClass creates the StorageClass "local-path", marked
	// default, when the plugin starts and it does not exist (default
	// true). An existing one is left as it is, so an administrator may
	// edit it, or remove its default mark.
	DefaultStorageClass *bool `json:"defaultStorageClass"`
}

// Plugin returns the plugin.
func Plugin() sdk.Plugin {
	p := sdk.InformerPlugin(Name, version, setup, informers.WithTransform(transform))
	p.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
		// Resizing: the claims' allocated resources, capacity and conditions.
		{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims/status"}, Verbs: []string{"update", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"persistentvolumes"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
		// The agents' kubelet API makes (update) and removes (delete) a
		// volume's directory for this.
		{APIGroups: []string{""}, Resources: []string{"nodes/" + localstorage.Subresource}, Verbs: []string{"update", "delete"}},
		{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: []string{"get", "list", "watch", "create"}},
		sdk.EventRule,
	}
	return p
}

// component is the event source, the provisioner's name as external
// provisioners report it.
const component = localstorage.Provisioner

type controller struct {
	client  kubernetes.Interface
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	nodes   corelisters.NodeLister
	classes storagelisters.StorageClassLister
	storage nodeStorage
	logger  *slog.Logger
	events  record.EventRecorder

	claimQueue, volumeQueue workqueue.TypedRateLimitingInterface[string]
}

func setup(ctx context.Context, env sdk.Env, client kubernetes.Interface, f informers.SharedInformerFactory) (func(context.Context) error, error) {
	cfg := Config{Workers: 4}
	if err := sdk.DecodeConfig(env.Config, &cfg); err != nil {
		return nil, err
	}
	if cfg.Workers < 1 || cfg.Workers > 64 {
		return nil, sdk.ConfigErrorf("workers", "workers is %d: set it between 1 and 64", cfg.Workers)
	}
	storage, err := newKubeletStorage(env.RESTConfig)
	if err != nil {
		return nil, err
	}
	c, err := newController(client, f, storage, env.Logger)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		c.events = sdk.NewEventRecorder(ctx, client, component)
		env.Logger.Info("provisioner started", "provisioner", localstorage.Provisioner, "workers", cfg.Workers)
		var wg sync.WaitGroup
		if ptr.Deref(cfg.DefaultStorageClass, true) {
			classQueue := sdk.NewQueue[string]("local-path-class")
			classQueue.Add(ClassName)
			wg.Go(func() { sdk.RunWorkers(ctx, classQueue, 1, c.ensureClass, c.logger) })
		}
		wg.Go(func() { sdk.RunWorkers(ctx, c.claimQueue, cfg.Workers, c.syncClaim, c.logger) })
		wg.Go(func() { sdk.RunWorkers(ctx, c.volumeQueue, cfg.Workers, c.syncVolume, c.logger) })
		wg.Wait()
		return nil
	}, nil
}

func newController(client kubernetes.Interface, f informers.SharedInformerFactory, storage nodeStorage, logger *slog.Logger) (*controller, error) {
	core := f.Core().V1()
	c := &controller{
		client: client, claims: core.PersistentVolumeClaims().Lister(), volumes: core.PersistentVolumes().Lister(),
		nodes: core.Nodes().Lister(), classes: f.Storage().V1().StorageClasses().Lister(), storage: storage, logger: logger,
		claimQueue:  sdk.NewQueue[string]("local-path-claims"),
		volumeQueue: sdk.NewQueue[string]("local-path-volumes"),
	}
	enqueueVolume := func(obj any) {
		if pv, ok := tombstone.Object[*v1.PersistentVolume](obj); ok && pv.Annotations[annProvisionedBy] == localstorage.Provisioner {
			c.volumeQueue.Add(pv.Name)
		}
	}
	handlers := []struct {
		what string
		inf  cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"persistentvolumeclaims", core.PersistentVolumeClaims().Informer(), sdk.EnqueueObjects(c.claimQueue)},
		{"persistentvolumes", core.PersistentVolumes().Informer(), cache.ResourceEventHandlerFuncs{
			AddFunc: enqueueVolume, UpdateFunc: func(_, o any) { enqueueVolume(o) }}},
		{"nodes", core.Nodes().Informer(), cache.ResourceEventHandlerFuncs{}},
		{"storageclasses", f.Storage().V1().StorageClasses().Informer(), cache.ResourceEventHandlerFuncs{}},
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return nil, fmt.Errorf("watching %s: %w", h.what, err)
		}
	}
	return c, nil
}

// transform keeps of a node what the provisioner reads (its labels, the
// storage-directory annotation, its addresses and kubelet port); other
// objects lose their managedFields.
func transform(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return sdk.StripManagedFields(obj)
	}
	s := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
		Status:     v1.NodeStatus{Addresses: n.Status.Addresses, DaemonEndpoints: n.Status.DaemonEndpoints},
	}
	if dir, ok := n.Annotations[localstorage.StorageDirAnnotation]; ok {
		s.Annotations = map[string]string{localstorage.StorageDirAnnotation: dir}
	}
	return s, nil
}
