// Package tombstone unwraps what an informer hands a delete handler: the
// deleted object, or, when the watch missed the deletion and a relist
// found the object gone, a cache.DeletedFinalStateUnknown holding its last
// known state.
package tombstone

import "k8s.io/client-go/tools/cache"

// Object returns the deleted object of type T in obj, if there is one.
func Object[T any](obj any) (T, bool) {
	if o, ok := obj.(T); ok {
		return o, true
	}
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		o, ok := tomb.Obj.(T)
		return o, ok
	}
	var zero T
	return zero, false
}
