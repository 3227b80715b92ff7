package servicepods

import (
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// PodHandler is the pod event handler of the endpoints controllers: it
// passes to enqueue the keys of the Services that select a pod before or
// after a change, unless nothing the endpoints show changed.
func PodHandler(services corelisters.ServiceLister, enqueue func(key string), logger *slog.Logger) cache.ResourceEventHandler {
	changed := func(oldObj, newObj any) {
		oldPod, newPod := PodFromEvent(oldObj), PodFromEvent(newObj)
		if oldPod != nil && newPod != nil && Unchanged(oldPod, newPod) {
			return
		}
		for _, pod := range []*corev1.Pod{oldPod, newPod} {
			if pod == nil {
				continue
			}
			keys, err := ServicesFor(services, pod)
			if err != nil {
				logger.Warn("finding the services of a pod", "pod", pod.Namespace+"/"+pod.Name, "error", err)
				continue
			}
			for _, k := range keys {
				enqueue(k)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { changed(nil, obj) },
		UpdateFunc: changed,
		DeleteFunc: func(obj any) { changed(obj, nil) },
	}
}
