package sliceset

import (
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// Watch registers on f an informer that caches only the EndpointSlices
// labelled as managed by managedBy (a controller never reads the others),
// and an event handler that passes the owner key (namespace/name of the
// Service the slice is labelled for) of every changed slice to enqueue,
// except when the tracker expected the deletion. It returns the lister
// of those slices.
func Watch(f informers.SharedInformerFactory, managedBy string, t *Tracker, enqueue func(key string)) (discoverylisters.EndpointSliceLister, error) {
	inf := f.InformerFor(&discoveryv1.EndpointSlice{}, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		return discoveryinformers.NewFilteredEndpointSliceInformer(c, metav1.NamespaceAll, resync,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
			func(o *metav1.ListOptions) { o.LabelSelector = discoveryv1.LabelManagedBy + "=" + managedBy })
	})
	changed := func(obj any) {
		if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
			if key, ok := OwnerKey(s); ok {
				enqueue(key)
			}
		}
	}
	// Any change is checked against the owner; the check is a no-op for
	// the controller's own writes.
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return
			}
			if key, ok := OwnerKey(s); ok && !t.ObserveDeletion(key, s) {
				enqueue(key)
			}
		},
	})
	return discoverylisters.NewEndpointSliceLister(inf.GetIndexer()), err
}

// OwnerKey is the namespace/name of the Service (or Endpoints) a slice is
// labelled for.
func OwnerKey(s *discoveryv1.EndpointSlice) (string, bool) {
	name := s.Labels[discoveryv1.LabelServiceName]
	return s.Namespace + "/" + name, name != ""
}

// NamePrefix is the generateName of the slices of a Service or Endpoints
// called name: the name and a dash, when that still makes a valid name.
func NamePrefix(name string) string {
	if len(validation.IsDNS1123Subdomain(name+"-a")) == 0 {
		return name + "-"
	}
	return name
}
