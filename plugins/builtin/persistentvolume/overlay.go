package persistentvolume

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
)

// overlay holds the objects this controller wrote until its informer shows
// them. Binding is a chain of writes (volume, volume status, claim, claim
// status) whose later steps read what the earlier ones returned; a sync that
// read the informer's older copy would write over its own work or trip on a
// conflict. Reads take whichever copy is newer, as upstream's controller
// does with its own caches.
type overlay[T metav1.Object] struct {
	mu   sync.Mutex
	objs map[string]T
}

func newOverlay[T metav1.Object]() *overlay[T] { return &overlay[T]{objs: map[string]T{}} }

// newer reports whether a's resourceVersion is after b's.
func newer(a, b metav1.Object) bool {
	c, err := resourceversion.CompareResourceVersion(a.GetResourceVersion(), b.GetResourceVersion())
	return err == nil && c > 0
}

// wrote records obj, the API server's answer to a write of key.
func (o *overlay[T]) wrote(key string, obj T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if old, ok := o.objs[key]; ok && !newer(obj, old) {
		return
	}
	o.objs[key] = obj
}

// pick returns the newer of cached (from the informer) and what was written
// for key.
func (o *overlay[T]) pick(key string, cached T) T {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.objs[key]; ok && w.GetUID() == cached.GetUID() && newer(w, cached) {
		return w
	}
	return cached
}

// seen forgets the write for key once the informer's copy caught up with it
// (or the object was replaced by one with another UID).
func (o *overlay[T]) seen(key string, cached T) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.objs[key]; ok && (w.GetUID() != cached.GetUID() || !newer(w, cached)) {
		delete(o.objs, key)
	}
}

// forget drops key (the object was deleted).
func (o *overlay[T]) forget(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.objs, key)
}
